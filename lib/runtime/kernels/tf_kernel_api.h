/*
 * The part of TensorFlow's stable C API that the project's own ops use (declared as in
 * tensorflow/c/{tf_status,tf_tensor,kernels,ops}.h, so that the ops build with a C compiler and
 * libtensorflow_framework alone), and the registration of an op with its CPU kernel.
 */
#ifndef DIFFUSION_TF_KERNEL_API_H
#define DIFFUSION_TF_KERNEL_API_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TF_Status TF_Status;
typedef struct TF_Tensor TF_Tensor;
typedef struct TF_OpKernelConstruction TF_OpKernelConstruction;
typedef struct TF_OpKernelContext TF_OpKernelContext;
typedef struct TF_KernelBuilder TF_KernelBuilder;
typedef struct TF_OpDefinitionBuilder TF_OpDefinitionBuilder;
typedef struct TF_ShapeInferenceContext TF_ShapeInferenceContext;

enum { TF_FLOAT = 1 };
enum { TF_OK = 0, TF_INVALID_ARGUMENT = 3 };

extern TF_Status* TF_NewStatus(void);
extern void TF_DeleteStatus(TF_Status*);
extern int TF_GetCode(const TF_Status*);
extern const char* TF_Message(const TF_Status*);
extern void TF_SetStatus(TF_Status*, int code, const char* message);
extern void* TF_TensorData(const TF_Tensor*);
extern int TF_NumDims(const TF_Tensor*);
extern int64_t TF_Dim(const TF_Tensor*, int index);
extern int64_t TF_TensorElementCount(const TF_Tensor*);
extern void TF_DeleteTensor(TF_Tensor*);
extern void TF_GetInput(TF_OpKernelContext*, int i, TF_Tensor** tensor, TF_Status*);
extern TF_Tensor* TF_AllocateOutput(TF_OpKernelContext*, int index, int dtype, const int64_t* dims,
                                    int num_dims, size_t len, TF_Status*);
extern void TF_OpKernelContext_Failure(TF_OpKernelContext*, TF_Status*);
extern void TF_OpKernelConstruction_GetAttrInt32(TF_OpKernelConstruction*, const char* name,
                                                 int32_t* value, TF_Status*);
extern void TF_OpKernelConstruction_GetAttrFloat(TF_OpKernelConstruction*, const char* name,
                                                 float* value, TF_Status*);
extern void TF_OpKernelConstruction_GetAttrBool(TF_OpKernelConstruction*, const char* name,
                                                unsigned char* value, TF_Status*);
extern int TF_NumInputs(TF_OpKernelContext*);
extern int TF_NumOutputs(TF_OpKernelContext*);
extern void TF_OpKernelConstruction_Failure(TF_OpKernelConstruction*, TF_Status*);
extern TF_KernelBuilder* TF_NewKernelBuilder(const char* op_name, const char* device_name,
                                             void* (*create)(TF_OpKernelConstruction*),
                                             void (*compute)(void*, TF_OpKernelContext*),
                                             void (*destroy)(void*));
extern void TF_RegisterKernelBuilder(const char* kernel_name, TF_KernelBuilder*, TF_Status*);
extern TF_OpDefinitionBuilder* TF_NewOpDefinitionBuilder(const char* op_name);
extern void TF_OpDefinitionBuilderAddInput(TF_OpDefinitionBuilder*, const char* spec);
extern void TF_OpDefinitionBuilderAddOutput(TF_OpDefinitionBuilder*, const char* spec);
extern void TF_OpDefinitionBuilderAddAttr(TF_OpDefinitionBuilder*, const char* spec);
extern void TF_OpDefinitionBuilderSetShapeInferenceFunction(
    TF_OpDefinitionBuilder*, void (*fn)(TF_ShapeInferenceContext*, TF_Status*));
extern void TF_ShapeInferenceContextSetUnknownShape(TF_ShapeInferenceContext*, TF_Status*);
extern void TF_RegisterOpDefinition(TF_OpDefinitionBuilder*, TF_Status*);


static void unknown_shapes(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  TF_ShapeInferenceContextSetUnknownShape(ctx, status);
}

/*
 * Registers op `name` (its inputs, outputs and attributes as op-definition specs, each list
 * ending in 0) with a CPU kernel made of `create`, `compute` and `destroy`; a failure is
 * printed, since a constructor has no one to return it to.
 */
static void define_op(const char* name, const char* const* inputs, const char* const* outputs,
                      const char* const* attrs, void* (*create)(TF_OpKernelConstruction*),
                      void (*compute)(void*, TF_OpKernelContext*), void (*destroy)(void*)) {
  TF_Status* status = TF_NewStatus();
  TF_OpDefinitionBuilder* op = TF_NewOpDefinitionBuilder(name);
  for (; *inputs; inputs++) TF_OpDefinitionBuilderAddInput(op, *inputs);
  for (; *outputs; outputs++) TF_OpDefinitionBuilderAddOutput(op, *outputs);
  for (; *attrs; attrs++) TF_OpDefinitionBuilderAddAttr(op, *attrs);
  TF_OpDefinitionBuilderSetShapeInferenceFunction(op, unknown_shapes);
  TF_RegisterOpDefinition(op, status);
  if (TF_GetCode(status) == TF_OK) {
    TF_KernelBuilder* kernel = TF_NewKernelBuilder(name, "CPU", create, compute, destroy);
    TF_RegisterKernelBuilder(name, kernel, status);
  }
  if (TF_GetCode(status) != TF_OK) {
    fprintf(stderr, "diffusion ops: registering %s failed: %s\n", name, TF_Message(status));
  }
  TF_DeleteStatus(status);
}

#endif
