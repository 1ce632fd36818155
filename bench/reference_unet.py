"""The benchmark's reference U-Net in PyTorch and in Keras (TensorFlow), and their timings.

The same network as bench/reference_unet.ts (522,048 parameters at C = 32, see there for the
architecture and why the count implies GroupNorm affine parameters and time-MLP biases), trained
by the same DDPM step: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with t ~ U{0..999} (linear
beta from 1e-4 to 0.02), loss = mean((eps - eps_theta(x_t, t))^2), Adam at lr 1e-3. Sampling is
one deterministic DDIM step (one forward pass and the update).

PyTorch runs eagerly (NCHW, as PyTorch code is written); Keras runs its usual way, a
tf.function-compiled step on TensorFlow's graph runtime (NHWC), without XLA.

Usage: python bench/reference_unet.py {torch|keras} --sizes 16 32 --batch 32 --sample-batch 64
         --steps 10 --warmup 3
prints one JSON object: framework, version, threads, and per size the parameter count and the
times (ms) of every measured training and sampling step. With --serve it first prints that
object without results, then answers each request line {"size": S, "steps": N, "warmup": W}
on standard input with one line {"size", "params", "train_ms", "sample_ms"}, keeping each
size's model between requests (scripts/bench.ts interleaves the runtimes this way, so that a
change in the machine's load falls on all of them alike). The PyTorch server's first line also
lists its "ports". A request with "network": "zoo", its "task", "config" (a complete
lib/core/models config), "batch" and the task's training options ("T", "gradClipNorm" and
"emaDecay" for "denoising", "learningRate" and "weightDecay" for "classification",
"contrastive" and "reconstruction", with "klWeight" for the last) times one of the model zoo's
networks instead, in PyTorch only, through the port of its kind (PORTS) and the
runner of its task (TASK_RUNNERS).

--list-ports prints the network kinds that have a PyTorch port, as a JSON list, without importing
PyTorch; --count-parameters reads a JSON list of complete configs on standard input and prints
their ports' parameter counts (tests/bench_test.ts compares them with lib/core/models').
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CHANNELS, GROUPS, TIME_DIM, EMBED_DIM = 32, 8, 32, 128
PARAMETER_COUNT = 522_048


def alpha_bar(steps=1000, beta_start=1e-4, beta_end=0.02):
    """abar_t = prod_{s<=t} (1 - beta_s), beta linear from beta_start to beta_end."""
    out, product = [], 1.0
    for t in range(steps):
        product *= 1 - (beta_start + (beta_end - beta_start) * t / (steps - 1))
        out.append(product)
    return out


def frequencies(dim=TIME_DIM):
    """omega_i = 10000^(-i/(d/2)); emb(t) = [sin(t omega), cos(t omega)]."""
    half = dim // 2
    return [math.exp(-math.log(10000) * i / half) for i in range(half)]


def torch_runtime(device="cpu"):
    import torch

    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    return {
        "framework": "pytorch",
        "label": f"PyTorch eager ({where})" if device == "cuda" else "PyTorch eager",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": where,
    }


def torch_runner(size, batch, sample_batch, device="cpu"):
    """The PyTorch network at `size` on `device`, its parameter count, a training step and a
    DDIM step. Each step ends by reading a number back, which waits for a GPU to finish."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        """conv(SiLU(GN(x))), with `x + ... + P e` when it has a time projection."""

        def __init__(self, cin, cout, time=False):
            super().__init__()
            self.norm = nn.GroupNorm(GROUPS, cin, eps=1e-5)
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.proj = nn.Linear(EMBED_DIM, cout, bias=False) if time else None

        def forward(self, x, e=None):
            h = self.conv(F.silu(self.norm(x)))
            return h if self.proj is None else x + h + self.proj(e)[:, :, None, None]

    class UNet(nn.Module):
        def __init__(self, c=CHANNELS):
            super().__init__()
            self.time = nn.Sequential(
                nn.Linear(TIME_DIM, EMBED_DIM), nn.SiLU(), nn.Linear(EMBED_DIM, EMBED_DIM), nn.SiLU()
            )
            self.inc = nn.Conv2d(3, c, 3, padding=1, bias=False)
            self.b1 = Block(c, c, True)
            self.d1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)
            self.b2 = Block(2 * c, 2 * c, True)
            self.d2 = nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1, bias=False)
            self.m = Block(4 * c, 4 * c, True)
            self.u2 = nn.ConvTranspose2d(4 * c, 2 * c, 3, stride=2, padding=1, output_padding=1, bias=False)
            self.ub2 = Block(4 * c, 2 * c)
            self.up = nn.Conv2d(2 * c, c, 3, padding=1, bias=False)
            self.ub1 = Block(2 * c, c)
            self.out = Block(c, 3)

        def forward(self, x, features):
            e = self.time(features)
            h1 = self.b1(self.inc(x), e)
            h2 = self.b2(self.d1(h1), e)
            h3 = self.m(self.d2(h2), e)
            u = self.ub2(torch.cat([self.u2(h3), h2], 1))
            u = self.up(F.interpolate(u, scale_factor=2, mode="nearest"))
            return self.out(self.ub1(torch.cat([u, h1], 1)))

    torch.manual_seed(0)
    host_abar = alpha_bar()
    abar = torch.tensor(host_abar, device=device)
    omega = torch.tensor(frequencies(), device=device)

    def embed(t):
        angles = t.float()[:, None] * omega[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], 1)

    model = UNet().to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x0 = torch.randn(batch, 3, size, size, device=device)

    def train_step():
        t = torch.randint(0, 1000, (batch,), device=device)
        eps = torch.randn_like(x0)
        a = abar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(model(xt, embed(t)), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    xs = torch.randn(sample_batch, 3, size, size, device=device)

    def ddim_step(t=500, t_prev=480):
        with torch.no_grad():
            eps = model(xs, embed(torch.full((sample_batch,), t, device=device)))
            a, a_prev = host_abar[t], host_abar[t_prev]
            x0_hat = (xs - math.sqrt(1 - a) * eps) / math.sqrt(a)
            out = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps
            return float(out[0, 0, 0, 0])

    return params, train_step, ddim_step


def class_context(labels, classes, null):
    """c = onehot(y) for a label y >= 0 and c = c_null (a learned vector, or zeros when `null` is
    None) for y = -1, as lib/core/nn/embeddings.ts classContext."""
    import torch.nn.functional as F

    known = (labels >= 0).float()[:, None]
    one_hot = F.one_hot(labels.clamp(min=0), classes).float() * known
    return one_hot if null is None else one_hot + (1 - known) * null[None, :]


def unet_torch(config):
    """The zoo's U-Net (lib/core/models/unet.ts, `config` its complete UNetConfig) in PyTorch:

        emb = MLP(sinusoidal(t)) [+ MLP(c)]
        h0 = Conv(x);  encoder: h_i = Res(h_{i-1}, emb) [-> Attn], Down at the end of each level
        middle: Res -> Attn -> Res;  decoder: Res([h, skip], emb) [-> Attn], Up between levels
        eps = Conv(SiLU(GN(h)))

    with cross-attention to context tokens after the residual block (and its self-attention) at
    `crossAttentionResolutions` and in the middle. A module whose forward(x, t, labels, states)
    takes NCHW images, timesteps, class labels (None for an unconditional network) and token
    states [N, L, D] (None without cross-attention), with `context_dim` the size of its class
    context and `cross_dim` the tokens' width D."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    groups, tdim, base = config["groups"], config["timeEmbeddingDim"], config["baseChannels"]
    context_dim, cross_dim = config["contextDim"], config.get("crossAttentionDim", 0)
    cross_at = config.get("crossAttentionResolutions", [])

    class ResidualBlock(nn.Module):
        """h = conv1(SiLU(GN(x))) + P SiLU(e); y = skip(x) + conv2(Dropout(SiLU(GN(h))))."""

        def __init__(self, cin, cout):
            super().__init__()
            self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.embedding = nn.Linear(tdim, cout)
            self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.dropout = nn.Dropout(config["dropout"])
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, e):
            h = self.conv1(F.silu(self.norm1(x))) + self.embedding(F.silu(e))[:, :, None, None]
            return self.skip(x) + self.conv2(self.dropout(F.silu(self.norm2(h))))

    class SelfAttention(nn.Module):
        """y = x + W_o softmax(Q K^T / sqrt(d)) V over the pixels, [Q, K, V] = GN(x) W_qkv
        (one matrix for the three: as many parameters as separate q, k and v layers)."""

        def __init__(self, channels):
            super().__init__()
            self.heads = config["attentionHeads"]
            self.norm = nn.GroupNorm(groups, channels)
            self.qkv, self.out = nn.Linear(channels, 3 * channels), nn.Linear(channels, channels)

        def forward(self, x):
            n, c, h, w = x.shape
            tokens = self.norm(x).flatten(2).transpose(1, 2)
            q, k, v = self.qkv(tokens).reshape(n, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, h * w, c)
            return x + self.out(a).transpose(1, 2).reshape(n, c, h, w)

    class CrossAttention(nn.Module):
        """y = x + W_o softmax(Q K^T / sqrt(d)) V, Q = GN(x) W_q from the pixels, K = c W_k and
        V = c W_v from the context tokens c [N, L, D] (a text encoder's states)."""

        def __init__(self, channels):
            super().__init__()
            self.heads = config["attentionHeads"]
            self.norm, self.q = nn.GroupNorm(groups, channels), nn.Linear(channels, channels)
            self.k, self.v = nn.Linear(cross_dim, channels), nn.Linear(cross_dim, channels)
            self.out = nn.Linear(channels, channels)

        def forward(self, x, states):
            n, c, h, w = x.shape
            split = lambda t: t.reshape(n, -1, self.heads, c // self.heads).transpose(1, 2)
            q = split(self.q(self.norm(x).flatten(2).transpose(1, 2)))
            a = F.scaled_dot_product_attention(q, split(self.k(states)), split(self.v(states)))
            return x + self.out(a.transpose(1, 2).reshape(n, h * w, c)).transpose(1, 2).reshape(n, c, h, w)

    class Stage(nn.Module):
        """A residual block, then self-attention and cross-attention where the config has them."""

        def __init__(self, cin, cout, attend, cross):
            super().__init__()
            self.res = ResidualBlock(cin, cout)
            self.attn = SelfAttention(cout) if attend else None
            self.cross = CrossAttention(cout) if cross else None

        def forward(self, h, e, states):
            h = self.res(h, e)
            h = self.attn(h) if self.attn is not None else h
            return self.cross(h, states) if self.cross is not None else h

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.context_dim, self.cross_dim = context_dim, cross_dim
            mults, size = config["channelMultipliers"], config["imageSize"]
            attn_at, blocks = config["attentionResolutions"], config["resBlocksPerLevel"]
            self.time = nn.Sequential(nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
            self.context = (
                nn.Sequential(nn.Linear(context_dim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
                if context_dim > 0 else None
            )
            learned = context_dim > 0 and config["nullContext"] == "learned"
            self.null = nn.Parameter(torch.zeros(context_dim)) if learned else None
            self.conv_in = nn.Conv2d(config["inChannels"], base, 3, padding=1)
            self.down, skips, ch = nn.ModuleList(), [base], base
            for level, m in enumerate(mults):
                attend, cross = size // 2**level in attn_at, size // 2**level in cross_at
                for _ in range(blocks):
                    self.down.append(Stage(ch, base * m, attend, cross))
                    ch = base * m
                    skips.append(ch)
                if level < len(mults) - 1:
                    self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                    skips.append(ch)
            self.mid1 = Stage(ch, ch, config["middleAttention"], config.get("middleCrossAttention", False))
            self.mid2 = ResidualBlock(ch, ch)
            self.up = nn.ModuleList()
            for level in reversed(range(len(mults))):
                attend, cross = size // 2**level in attn_at, size // 2**level in cross_at
                for _ in range(blocks + 1):
                    self.up.append(Stage(ch + skips.pop(), base * mults[level], attend, cross))
                    ch = base * mults[level]
                if level > 0:
                    self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))
            self.norm_out, self.conv_out = nn.GroupNorm(groups, ch), nn.Conv2d(ch, config["outChannels"], 3, padding=1)
            half = base // 2
            self.register_buffer("omega", torch.exp(-math.log(10000) * torch.arange(half) / half))

        def forward(self, x, t, labels=None, states=None):
            angles = t.float()[:, None] * self.omega[None, :]
            e = self.time(torch.cat([torch.cos(angles), torch.sin(angles)], 1))
            if self.context is not None:
                if labels is None:
                    labels = torch.full((x.shape[0],), -1, device=x.device)
                e = e + self.context(class_context(labels, self.context_dim, self.null))
            h = self.conv_in(x)
            skips = [h]
            for layer in self.down:
                h = layer(h, e, states) if isinstance(layer, Stage) else layer(h)
                skips.append(h)
            h = self.mid2(self.mid1(h, e, states), e)
            for layer in self.up:
                h = layer(torch.cat([h, skips.pop()], 1), e, states) if isinstance(layer, Stage) else layer(h)
            return self.conv_out(F.silu(self.norm_out(h)))

    return UNet()


def context_unet_torch(config):
    """The DeepLearning.AI course's ContextUnet (lib/core/models/context_unet.ts, `config` its
    complete ContextUNetConfig) in PyTorch, with that module's fix: the initial block's 1x1
    shortcut is a trained layer, not one re-created at every call.

        x0 = RCB_res(x);  d1 = Down(x0);  d2 = Down(d1);  v = GELU(AvgPool_4(d2))
        u1 = ReLU(GN(ConvT(v)));  u2 = Up(c1 * u1 + t1, d2);  u3 = Up(c2 * u2 + t2, d1)
        eps = Conv(ReLU(GN(Conv([u3, x0]))))

    with t_{1,2} = EmbedFC((t + 1)/T), c_{1,2} = EmbedFC(c); RCB = 2 x (Conv 3x3 -> BatchNorm ->
    GELU), residual: (shortcut(x) + h) / 1.414; Down = 2 RCB then max pool 2; Up = ConvT(2, 2) on
    [x, skip] then 2 RCB. A module as unet_torch's."""
    import torch
    import torch.nn as nn

    n, classes, size, channels = config["nFeat"], config["nCFeat"], config["imageSize"], config["inChannels"]

    class ResidualConvBlock(nn.Module):
        def __init__(self, cin, cout, residual=False):
            super().__init__()
            self.residual = residual
            self.conv1 = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU())
            self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU())
            self.shortcut = nn.Conv2d(cin, cout, 1) if residual and cin != cout else nn.Identity()

        def forward(self, x):
            h = self.conv2(self.conv1(x))
            return (self.shortcut(x) + h) / 1.414 if self.residual else h

    def embed_fc(cin, cout):
        return nn.Sequential(nn.Linear(cin, cout), nn.GELU(), nn.Linear(cout, cout))

    class ContextUnet(nn.Module):
        def __init__(self):
            super().__init__()
            self.context_dim = classes
            self.init_conv = ResidualConvBlock(channels, n, residual=True)
            self.down1 = nn.Sequential(ResidualConvBlock(n, n), ResidualConvBlock(n, n), nn.MaxPool2d(2))
            self.down2 = nn.Sequential(ResidualConvBlock(n, 2 * n), ResidualConvBlock(2 * n, 2 * n), nn.MaxPool2d(2))
            self.to_vec = nn.Sequential(nn.AvgPool2d(4), nn.GELU())
            self.time1, self.time2 = embed_fc(1, 2 * n), embed_fc(1, n)
            self.context1, self.context2 = embed_fc(classes, 2 * n), embed_fc(classes, n)
            self.up0 = nn.Sequential(nn.ConvTranspose2d(2 * n, 2 * n, size // 4, size // 4), nn.GroupNorm(8, 2 * n), nn.ReLU())
            self.up1 = nn.Sequential(nn.ConvTranspose2d(4 * n, n, 2, 2), ResidualConvBlock(n, n), ResidualConvBlock(n, n))
            self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * n, n, 2, 2), ResidualConvBlock(n, n), ResidualConvBlock(n, n))
            self.out = nn.Sequential(nn.Conv2d(2 * n, n, 3, padding=1), nn.GroupNorm(8, n), nn.ReLU(), nn.Conv2d(n, channels, 3, padding=1))
            learned = config["nullContext"] == "learned"
            self.null = nn.Parameter(torch.zeros(classes)) if learned else None

        def forward(self, x, t, labels=None, states=None):
            batch = x.shape[0]
            if labels is None:
                labels = torch.full((batch,), -1, device=x.device)
            c = class_context(labels, classes, self.null)
            time = ((t.float() + 1) / config["T"])[:, None]
            vec = lambda e, ch: e.view(batch, ch, 1, 1)
            x0 = self.init_conv(x)
            d1 = self.down1(x0)
            d2 = self.down2(d1)
            u1 = self.up0(self.to_vec(d2))
            u2 = self.up1(torch.cat([vec(self.context1(c), 2 * n) * u1 + vec(self.time1(time), 2 * n), d2], 1))
            u3 = self.up2(torch.cat([vec(self.context2(c), n) * u2 + vec(self.time2(time), n), d1], 1))
            return self.out(torch.cat([u3, x0], 1))

    return ContextUnet()


def classifier_torch(config):
    """The zoo's feature classifier (lib/core/models/classifier.ts, `config` its complete
    ClassifierConfig) in PyTorch: per stage s, 2x2 max pooling before every stage but the first,

        h_s = SiLU(GN(conv(SiLU(GN(conv(pool(h_{s-1})))))))   (3x3 convolutions with biases)

    the features phi(x) = the last stage's spatial mean, and each head a linear map of phi(x) to
    logits. A module whose features(x) takes NCHW images and whose forward(x) gives the logits of
    every head, in the configuration's order."""
    import torch.nn as nn
    import torch.nn.functional as F

    groups = config["groups"]

    def stage(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [config["inChannels"], *config["channels"]]
            self.stages = nn.ModuleList(stage(a, b) for a, b in zip(widths, widths[1:]))
            self.heads = nn.ModuleList(nn.Linear(widths[-1], h["classes"]) for h in config["heads"])

        def features(self, x):
            for s, block in enumerate(self.stages):
                x = block(F.max_pool2d(x, 2) if s > 0 else x)
            return x.mean((2, 3))

        def forward(self, x):
            phi = self.features(x)
            return [head(phi) for head in self.heads]

    return Classifier()


def clip_torch(config):
    """The zoo's tiny CLIP (lib/core/models/clip.ts, `config` its ClipConfig as the artefact
    records it) in PyTorch: the classifier's stages without heads as the image tower, f(x) =
    W_I phi(x); a pre-LN transformer over token and learned position embeddings as the text tower
    (lib/core/models/text_encoder.ts: padding masked out of attention, GELU MLPs, a final LN, the
    state at EOS pooled), g(y) = W_T e(y); and the log inverse temperature. A module whose
    image(x) and text(ids) give the unnormalised embeddings and states(ids) the token states."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    image = {"inChannels": 3, "channels": [32, 64, 128], "groups": 8, **config["image"], "heads": []}
    text, width = config["text"], config["text"]["width"]
    heads, length = text.get("heads", 4), text["contextLength"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
            hidden = text.get("mlpRatio", 4) * width
            self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

        def forward(self, h, pad):
            n = h.shape[0]
            x = self.norm1(h)
            q, k, v = (layer(x).reshape(n, length, heads, -1).transpose(1, 2) for layer in (self.q, self.k, self.v))
            mask = torch.zeros(n, 1, 1, length, device=h.device).masked_fill(pad[:, None, None, :], -1e9)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            h = h + self.out(a.transpose(1, 2).reshape(n, length, width))
            return h + self.fc2(F.gelu(self.fc1(self.norm2(h))))

    class Clip(nn.Module):
        def __init__(self):
            super().__init__()
            self.tower = classifier_torch(image)
            self.token = nn.Embedding(text["vocabularySize"], width)
            self.position = nn.Parameter(torch.zeros(length, width))
            self.blocks = nn.ModuleList(Block() for _ in range(text.get("layers", 2)))
            self.final = nn.LayerNorm(width)
            self.image_projection = nn.Linear(image["channels"][-1], config["embedDim"])
            self.text_projection = nn.Linear(width, config["embedDim"])
            self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

        def states(self, ids):
            pad = ids == 0
            h = self.token(ids) + self.position[None]
            for block in self.blocks:
                h = block(h, pad)
            return self.final(h), pad

        def image(self, x):
            return self.image_projection(self.tower.features(x))

        def text(self, ids):
            states, pad = self.states(ids)
            eos = (~pad).sum(1) - 1
            return self.text_projection(states[torch.arange(ids.shape[0], device=ids.device), eos])

    return Clip()


def autoencoder_torch(config):
    """The zoo's KL autoencoder (lib/core/models/autoencoder.ts, `config` its complete
    AutoencoderConfig) in PyTorch, LDM's AutoencoderKL at the book's size:

        E: Conv -> [Res x r, Down] per level (no Down after the last) -> Res, Attn, Res
             -> Conv(SiLU(GN(.))) to 2c channels, split into mu and log sigma^2 (clamped to [-30, 20])
        D: Conv(z) -> Res, Attn, Res -> [Res x (r + 1), Up] per level, deepest first (no Up after
             level 0) -> Conv(SiLU(GN(.))) to the image's channels

    Res is a residual block without a time embedding, Attn single-head self-attention with
    separate q, k, v and out layers (lib/core/nn/attention.ts), Down a stride-2 3x3 convolution
    padded as TensorFlow's "same" pads an even size (0 before, 1 after: LDM's F.pad), Up
    nearest-neighbour doubling and a 3x3 convolution. A module whose encode(x) gives mu and the
    clamped log sigma^2 of NCHW images and decode(z) the images of latents."""
    import torch.nn as nn
    import torch.nn.functional as F

    groups, base, blocks = config["groups"], config["baseChannels"], config["resBlocksPerLevel"]
    widths = [base * m for m in config["channelMultipliers"]]

    class ResidualBlock(nn.Module):
        """y = skip(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))))), skip a 1x1 convolution when the
        channels change."""

        def __init__(self, cin, cout):
            super().__init__()
            self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x):
            h = self.conv1(F.silu(self.norm1(x)))
            return self.skip(x) + self.conv2(F.silu(self.norm2(h)))

    class SelfAttention(nn.Module):
        """y = x + W_o softmax(Q K^T / sqrt(C)) V over the pixels, Q, K, V = GN(x) W_{q,k,v}."""

        def __init__(self, channels):
            super().__init__()
            self.norm = nn.GroupNorm(groups, channels)
            self.q, self.k, self.v, self.out = (nn.Linear(channels, channels) for _ in range(4))

        def forward(self, x):
            n, c, h, w = x.shape
            tokens = self.norm(x).flatten(2).transpose(1, 2)
            a = F.scaled_dot_product_attention(self.q(tokens), self.k(tokens), self.v(tokens))
            return x + self.out(a).transpose(1, 2).reshape(n, c, h, w)

    class Downsample(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv = nn.Conv2d(channels, channels, 3, stride=2)

        def forward(self, x):
            return self.conv(F.pad(x, (0, 1, 0, 1)))

    def middle(channels):
        attention = SelfAttention(channels) if config["middleAttention"] else nn.Identity()
        return [ResidualBlock(channels, channels), attention, ResidualBlock(channels, channels)]

    def output(channels, cout):
        return [nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, cout, 3, padding=1)]

    class AutoencoderKL(nn.Module):
        def __init__(self):
            super().__init__()
            encoder, ch = [nn.Conv2d(config["inChannels"], base, 3, padding=1)], base
            for level, width in enumerate(widths):
                for _ in range(blocks):
                    encoder.append(ResidualBlock(ch, width))
                    ch = width
                if level < len(widths) - 1:
                    encoder.append(Downsample(ch))
            self.encoder = nn.Sequential(*encoder, *middle(ch), *output(ch, 2 * config["latentChannels"]))
            decoder = [nn.Conv2d(config["latentChannels"], ch, 3, padding=1), *middle(ch)]
            for level in reversed(range(len(widths))):
                for _ in range(blocks + 1):
                    decoder.append(ResidualBlock(ch, widths[level]))
                    ch = widths[level]
                if level > 0:
                    decoder += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
            self.decoder = nn.Sequential(*decoder, *output(ch, config["inChannels"]))

        def encode(self, x):
            mean, log_variance = self.encoder(x).chunk(2, 1)
            return mean, log_variance.clamp(-30, 20)

        def decode(self, z):
            return self.decoder(z)

    return AutoencoderKL()


# The PyTorch port of each network kind of lib/core/models (the registry's `kind`), by kind: a
# function from the kind's complete configuration to the module. A new kind in the zoo needs one
# here, with exactly the parameter count of createModel(config).parameterCount() (scripts/bench.ts
# checks it; tests/bench_test.ts checks that every kind the zoo uses has a port).
PORTS = {
    "unet": unet_torch,
    "contextUnet": context_unet_torch,
    "classifier": classifier_torch,
    "clip": clip_torch,
    "autoencoderKL": autoencoder_torch,
}


def no_port(kind):
    """The message for a network kind without a port."""
    return (f'the zoo\'s network kind "{kind}" has no PyTorch port: add one to PORTS in '
            f"bench/reference_unet.py (ports exist for {', '.join(sorted(PORTS))})")


def port(config):
    """The PyTorch module of a zoo network, by its kind."""
    if config["kind"] not in PORTS:
        raise SystemExit(no_port(config["kind"]))
    return PORTS[config["kind"]](config)


def denoiser_torch_runner(request, sample_batch, device="cpu"):
    """A zoo network (`request["config"]`, a complete lib/core/models config of any kind in
    PORTS) trained the way lib/training/trainer.ts trains it, at `request["batch"]`: eps-MSE,
    the gradient norm clipped to `request["gradClipNorm"]` (None: no clipping), Adam, and an EMA
    of the weights (decay `request["emaDecay"]`, BatchNorm statistics copied); class labels
    y = i mod K for a conditional network, random states of 16 tokens for a cross-attending one.
    Sampling is one DDIM step with x0_hat clipped, the
    BatchNorm layers on their running statistics. The linear schedule over `request["T"]` steps
    stands in for the spec's: its values do not change what a step costs. Returns the parameter
    count, a training step and a DDIM step."""
    import torch
    import torch.nn.functional as F

    config, batch, steps = request["config"], request["batch"], request["T"]
    clip, decay = request["gradClipNorm"], request["emaDecay"]
    torch.manual_seed(0)
    host_abar = alpha_bar(steps)
    abar = torch.tensor(host_abar, device=device)
    model = port(config).to(device)
    params = sum(p.numel() for p in model.parameters())
    parameters = list(model.parameters())
    ema = [p.detach().clone() for p in parameters]
    buffers = list(model.buffers())
    ema_buffers = [b.detach().clone() for b in buffers]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    size, channels = config["imageSize"], config["inChannels"]
    labels_of = lambda n: torch.arange(n, device=device) % model.context_dim if model.context_dim else None
    x0 = torch.rand(batch, channels, size, size, device=device) * 2 - 1
    labels = labels_of(batch)
    # Token states of 16 tokens for a network that cross-attends (a text encoder's, in the book).
    cross_dim = getattr(model, "cross_dim", 0)
    states_of = lambda n: torch.randn(n, 16, cross_dim, device=device) if cross_dim else None
    states = states_of(batch)

    def train_step():
        model.train()
        t = torch.randint(0, steps, (batch,), device=device)
        eps = torch.randn_like(x0)
        a = abar[t][:, None, None, None]
        loss = F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t, labels, states), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in parameters], 1 - decay)
            for e, b in zip(ema_buffers, buffers):
                e.copy_(b)
        return loss.item()

    xs = torch.randn(sample_batch, channels, size, size, device=device)
    sample_labels, sample_states = labels_of(sample_batch), states_of(sample_batch)
    t, t_prev = steps // 2, steps // 2 - steps // 50

    def ddim_step():
        model.eval()
        with torch.no_grad():
            eps = model(xs, torch.full((sample_batch,), t, device=device), sample_labels, sample_states)
            a, a_prev = host_abar[t], host_abar[t_prev]
            x0_hat = ((xs - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
            out = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps
            return float(out[0, 0, 0, 0])

    return params, train_step, ddim_step


def adamw_port(request, device):
    """The port of `request["config"]` (seed 0) on `device`, its parameter count, and AdamW with
    `request["learningRate"]`, `request["weightDecay"]`, betas 0.9 and 0.999, eps 1e-8: the
    optimiser of lib/training/supervised.ts's adamW."""
    import torch

    torch.manual_seed(0)
    model = port(request["config"]).to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=request["learningRate"],
                                  betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=request["weightDecay"])
    return model, params, optimizer


def classifier_torch_runner(request, sample_batch, device="cpu"):
    """The zoo's feature classifier (`request["config"]`) trained the way
    lib/training/classification.ts's classifierStep trains it, at `request["batch"]`: the sum of
    the heads' cross-entropies on a fixed batch of random images with labels y = i mod K per head,
    then AdamW (`request["learningRate"]`, `request["weightDecay"]`, betas 0.9 and 0.999, eps
    1e-8). Inference is the features phi(x) of `sample_batch` images. Returns the parameter count,
    a training step and an inference step."""
    import torch
    import torch.nn.functional as F

    config, batch = request["config"], request["batch"]
    model, params, optimizer = adamw_port(request, device)
    size, channels = config["imageSize"], config["inChannels"]
    x = torch.tanh(torch.randn(batch, channels, size, size, device=device))
    labels = [torch.arange(batch, device=device) % h["classes"] for h in config["heads"]]

    def train_step():
        model.train()
        loss = sum(F.cross_entropy(l, y) for l, y in zip(model(x), labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    xs = torch.tanh(torch.randn(sample_batch, channels, size, size, device=device))

    def features_step():
        model.eval()
        with torch.no_grad():
            return float(model.features(xs)[0, 0])

    return params, train_step, features_step


def clip_torch_runner(request, sample_batch, device="cpu"):
    """The zoo's tiny CLIP (`request["config"]`) trained the way lib/training/contrastive.ts
    trains it, at `request["batch"]` pairs: the symmetric InfoNCE loss of the cosine similarities
    times min(e^tau, 100), on a fixed batch of random images and captions (BOS, words, EOS, PAD),
    then AdamW (`request["learningRate"]`, `request["weightDecay"]`). Inference is the text
    tower's token states of `sample_batch` captions. Returns the parameter count, a training step
    and an inference step."""
    import torch
    import torch.nn.functional as F

    config, batch = request["config"], request["batch"]
    model, params, optimizer = adamw_port(request, device)
    size = config["imageSize"]
    vocabulary, length = config["text"]["vocabularySize"], config["text"]["contextLength"]

    def captions(n):
        ids = torch.zeros(n, length, dtype=torch.long)
        for i in range(n):
            words = 2 + i % (length - 3)
            ids[i, 0], ids[i, words + 1] = 2, 3
            ids[i, 1:words + 1] = torch.randint(4, vocabulary, (words,))
        return ids.to(device)

    x = torch.tanh(torch.randn(batch, 3, size, size, device=device))
    y = captions(batch)
    target = torch.arange(batch, device=device)

    def train_step():
        model.train()
        z, u = F.normalize(model.image(x), dim=1), F.normalize(model.text(y), dim=1)
        s = z @ u.T * model.log_scale.exp().clamp(max=100)
        loss = (F.cross_entropy(s, target) + F.cross_entropy(s.T, target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    prompts = captions(sample_batch)

    def states_step():
        model.eval()
        with torch.no_grad():
            return float(model.states(prompts)[0][0, 0, 0])

    return params, train_step, states_step


def autoencoder_torch_runner(request, sample_batch, device="cpu"):
    """The zoo's KL autoencoder (`request["config"]`) trained as scripts/bench/zoo.ts's
    autoencoderWorkload times lib/training/autoencoder.ts's loss, at `request["batch"]` images:

        L = mean |x - D(z)| + beta KL(q(z|x) || N(0, I)) / (H W 3),  z = mu + exp(log sigma^2 / 2) eps,
        KL = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2)  (summed over the latent, mean over images)

    (the perceptual term left out, as there) on a fixed batch of random images, eps drawn each
    step, then AdamW (`request["learningRate"]`, `request["weightDecay"]`; beta is
    `request["klWeight"]`, LDM's 1e-6 when the request has none: it does not change what a step
    costs). Inference is the reconstruction D(mu(x)) of `sample_batch` images. Returns the
    parameter count, a training step and an inference step."""
    import torch

    config, batch = request["config"], request["batch"]
    beta = request.get("klWeight", 1e-6)
    model, params, optimizer = adamw_port(request, device)
    size, channels = config["imageSize"], config["inChannels"]
    x = torch.tanh(torch.randn(batch, channels, size, size, device=device))
    values = size * size * channels

    def train_step():
        model.train()
        mean, log_variance = model.encode(x)
        z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        kl = 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).sum((1, 2, 3)).mean()
        loss = (x - model.decode(z)).abs().mean() + beta / values * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    xs = torch.tanh(torch.randn(sample_batch, channels, size, size, device=device))

    def reconstruction_step():
        model.eval()
        with torch.no_grad():
            return float(model.decode(model.encode(xs)[0])[0, 0, 0, 0])

    return params, train_step, reconstruction_step


# The PyTorch runner of each task of the zoo's networks (the request's "task").
TASK_RUNNERS = {
    "denoising": denoiser_torch_runner,
    "classification": classifier_torch_runner,
    "contrastive": clip_torch_runner,
    "reconstruction": autoencoder_torch_runner,
}


def keras_runtime(device="cpu"):
    import tensorflow as tf
    import keras

    return {
        "framework": "keras",
        "label": "Keras 3 on TensorFlow (tf.function)",
        "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
        "threads": os.cpu_count(),
    }


def keras_runner(size, batch, sample_batch, device="cpu"):
    """The Keras network at `size`, its parameter count, a training step and a DDIM step."""
    import tensorflow as tf
    import keras
    from keras import layers, ops

    def block(x, cin_name, cout, e=None):
        h = layers.GroupNormalization(groups=GROUPS, epsilon=1e-5, name=f"{cin_name}_norm")(x)
        h = layers.Activation("silu")(h)
        h = layers.Conv2D(cout, 3, padding="same", use_bias=False, name=f"{cin_name}_conv")(h)
        if e is None:
            return h
        p = layers.Dense(cout, use_bias=False, name=f"{cin_name}_proj")(e)
        return x + h + ops.reshape(p, (-1, 1, 1, cout))

    def unet(size, c=CHANNELS):
        x = keras.Input((size, size, 3))
        features = keras.Input((TIME_DIM,))
        e = layers.Dense(EMBED_DIM, activation="silu")(features)
        e = layers.Dense(EMBED_DIM, activation="silu")(e)
        conv = lambda cout, stride=1: layers.Conv2D(cout, 3, strides=stride, padding="same", use_bias=False)
        h1 = block(conv(c)(x), "b1", c, e)
        h2 = block(conv(2 * c, 2)(h1), "b2", 2 * c, e)
        h3 = block(conv(4 * c, 2)(h2), "m", 4 * c, e)
        u = layers.Conv2DTranspose(2 * c, 3, strides=2, padding="same", use_bias=False)(h3)
        u = block(layers.Concatenate()([u, h2]), "ub2", 2 * c)
        u = conv(c)(layers.UpSampling2D(2, interpolation="nearest")(u))
        u = block(layers.Concatenate()([u, h1]), "ub1", c)
        return keras.Model([x, features], block(u, "out", 3))

    tf.random.set_seed(0)
    abar = tf.constant(alpha_bar(), tf.float32)
    omega = tf.constant(frequencies(), tf.float32)

    def embed(t):
        angles = tf.cast(t, tf.float32)[:, None] * omega[None, :]
        return tf.concat([tf.sin(angles), tf.cos(angles)], 1)

    model = unet(size)
    params = int(model.count_params())
    optimizer = keras.optimizers.Adam(1e-3)
    x0 = tf.random.normal((batch, size, size, 3))

    @tf.function(jit_compile=False)
    def train_graph():
        t = tf.random.uniform((batch,), 0, 1000, tf.int32)
        eps = tf.random.normal(tf.shape(x0))
        a = tf.reshape(tf.gather(abar, t), (-1, 1, 1, 1))
        xt = tf.sqrt(a) * x0 + tf.sqrt(1 - a) * eps
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(eps - model([xt, embed(t)], training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    xs = tf.random.normal((sample_batch, size, size, 3))

    @tf.function(jit_compile=False)
    def ddim_graph(t=500, t_prev=480):
        eps = model([xs, embed(tf.fill((sample_batch,), t))], training=False)
        x0_hat = (xs - tf.sqrt(1 - abar[t]) * eps) / tf.sqrt(abar[t])
        return tf.sqrt(abar[t_prev]) * x0_hat + tf.sqrt(1 - abar[t_prev]) * eps

    return params, lambda: float(train_graph()), lambda: float(ddim_graph()[0, 0, 0, 0])


RUNTIMES = {"torch": (torch_runtime, torch_runner), "keras": (keras_runtime, keras_runner)}


def timed(train_step, sample_step, steps, warmup):
    """Times (ms) of `steps` training and sampling steps after `warmup` untimed ones each."""
    out = {}
    for key, step in (("train_ms", train_step), ("sample_ms", sample_step)):
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1000)
        out[key] = times
    return out


def check(framework, params):
    if params != PARAMETER_COUNT:
        raise SystemExit(f"{framework} network has {params} parameters, not {PARAMETER_COUNT}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("framework", nargs="?", choices=sorted(RUNTIMES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where PyTorch runs (Keras runs where TensorFlow puts it)")
    parser.add_argument("--list-ports", action="store_true",
                        help="print the network kinds with a PyTorch port (JSON), importing nothing")
    parser.add_argument("--count-parameters", action="store_true",
                        help="read a JSON list of complete configs, print their ports' parameter counts")
    args = parser.parse_args()
    if args.list_ports:
        print(json.dumps(sorted(PORTS)))
        return
    if args.count_parameters:
        configs = json.load(sys.stdin)
        print(json.dumps([sum(p.numel() for p in port(c).parameters()) for c in configs]))
        return
    if args.framework is None:
        parser.error("name a framework (torch or keras), or pass --list-ports")
    describe, make = RUNTIMES[args.framework]
    report = describe(args.device)
    if args.serve:
        if args.framework == "torch":
            report["ports"] = sorted(PORTS)
        print(json.dumps(report), flush=True)
        runners = {}
        for line in sys.stdin:
            request = json.loads(line)
            size = request["size"]
            network = request.get("network", "reference")
            if network == "zoo":
                if args.framework != "torch":
                    raise SystemExit(f"{args.framework}: the zoo's networks have PyTorch ports only")
                key = (network, json.dumps(request["config"], sort_keys=True), request["batch"])
                if key not in runners:
                    runner = TASK_RUNNERS[request.get("task", "denoising")]
                    runners[key] = runner(request, args.sample_batch, args.device)
            else:
                key = (network, size)
                if key not in runners:
                    runners[key] = make(size, args.batch, args.sample_batch, args.device)
                    check(args.framework, runners[key][0])
            params, train_step, sample_step = runners[key]
            times = timed(train_step, sample_step, request["steps"], request["warmup"])
            print(json.dumps({"size": size, "params": params, **times}), flush=True)
        return
    report["results"] = []
    for size in args.sizes:
        params, train_step, sample_step = make(size, args.batch, args.sample_batch, args.device)
        check(args.framework, params)
        times = timed(train_step, sample_step, args.steps, args.warmup)
        report["results"].append({"size": size, "params": params, **times})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
