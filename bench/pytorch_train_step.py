#!/usr/bin/env python3
"""Times one CoMIR training step in PyTorch (the PyTorch half of bench/train-step).

The network is the FC-DenseNet ("Tiramisu") DenseUNet of the official CoMIR code
(`models/tiramisu.py` + the `ModNet` head of the training scripts), built with the
same structure and the same state_dict key names:

  conv_init                      Conv 3x3 (in -> init, bias)
  layers_down.i.layers.j         BN -> ReLU -> Conv 3x3 (-> growth, bias)   [dense layer]
  transitions_down.i             BN -> ReLU -> Conv 1x1 (-> int(c*compression), bias) -> MaxPool 2
  bottleneck.layers.j            dense block returning only its new features
  transitions_up.i               nearest x2 -> Conv 3x3 (c -> c, bias) -> ReLU, crop, cat [skip, up]
  layers_up.i.layers.j           dense blocks (new features only, except the last one)
  final_conv                     Conv 1x1 (-> D, no bias), no activation

One step, as in the reference `train_comir.py` / notebooks and comir's `Trainer::step`:
both networks (modality A and B) on C4-rotated patches (independent random k per sample
and modality, undone on the outputs), InfoNCE (mse critic, tau 0.5), L1 + L2 activation
decay (1e-4 each), one backward, clip_grad_norm_(1.0) per network, SGD (lr 1e-2,
momentum 0.9, weight decay 1e-5) per network.

Prints one JSON object on stdout (progress on stderr). `--save-weights PATH` writes the
initial state_dict of network A (seed 0) as safetensors, keys as in the reference.
"""

import argparse
import json
import os
import resource
import sys
import time

PRESETS = {
    # init filters, down blocks, bottleneck layers, up blocks, growth, compression, params (1 in, D = 1)
    "histology": dict(init=32, down=(4,) * 6, bottleneck=4, up=(4,) * 6, growth=12, compression=0.75,
                      params=1_053_244),
    "small": dict(init=16, down=(2,) * 3, bottleneck=3, up=(2,) * 3, growth=12, compression=1.0,
                  params=164_600),
    # comir's own (not in the reference): small at half the width
    "fast": dict(init=12, down=(2,) * 3, bottleneck=3, up=(2,) * 3, growth=6, compression=1.0,
                 params=46_260),
}


def fail(message, code=2):
    print(f"pytorch_train_step: {message}", file=sys.stderr)
    sys.exit(code)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="histology")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps (0: only build / save weights)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--loop-loss", action="store_true",
                   help="similarity matrix with the reference's double loop instead of one matmul")
    p.add_argument("--save-weights", metavar="PATH",
                   help="write network A's initial state_dict to PATH as safetensors")
    a = p.parse_args()
    if a.batch < 2:
        fail("--batch must be at least 2 (InfoNCE needs negatives)")
    if a.steps < 0 or a.warmup < 0 or a.threads < 1:
        fail("--steps/--warmup must be >= 0 and --threads >= 1")
    if a.size % (1 << len(PRESETS[a.preset]["down"])) != 0:
        fail(f"--size must be a multiple of {1 << len(PRESETS[a.preset]['down'])} for {a.preset}")
    return a


def rss_mib(field):
    """VmRSS / VmHWM of this process in MiB (None without /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def build(torch, preset, in_channels=1, out_channels=1):
    nn = torch.nn
    F = torch.nn.functional
    cfg = PRESETS[preset] if isinstance(preset, str) else preset

    def conv3(cin, cout):
        return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)

    class DenseLayer(nn.Module):
        def __init__(self, cin, growth):
            super().__init__()
            self.batchnorm = nn.BatchNorm2d(cin)
            self.relu = nn.ReLU(inplace=True)
            self.conv = conv3(cin, growth)

        def forward(self, x):
            return self.conv(self.relu(self.batchnorm(x)))

    class DenseBlock(nn.Module):
        def __init__(self, cin, growth, n, new_only):
            super().__init__()
            self.layers = nn.ModuleList([DenseLayer(cin + i * growth, growth) for i in range(n)])
            self.new_only = new_only

        def forward(self, x):
            feats = [x]
            for layer in self.layers:
                feats.append(layer(torch.cat(feats, 1)))
            return torch.cat(feats[1:] if self.new_only else feats, 1)

    class TransitionDown(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__()
            self.add_module("batchnorm", nn.BatchNorm2d(cin))
            self.add_module("relu", nn.ReLU(inplace=True))
            self.add_module("conv", nn.Conv2d(cin, cout, kernel_size=1, bias=True))
            self.add_module("pool", nn.MaxPool2d(2))

    class TransitionUp(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.upsampling_layer = nn.Sequential(
                nn.UpsamplingNearest2d(scale_factor=2), conv3(c, c), nn.ReLU(inplace=True))

        def forward(self, x, skip):
            out = self.upsampling_layer(x)
            h, w = skip.shape[2], skip.shape[3]
            top, left = (out.shape[2] - h) // 2, (out.shape[3] - w) // 2
            return torch.cat([skip, out[:, :, top:top + h, left:left + w]], 1)

    class DenseUNet(nn.Module):
        def __init__(self):
            super().__init__()
            g = cfg["growth"]
            c = cfg["init"]
            self.conv_init = conv3(in_channels, c)
            self.layers_down = nn.ModuleList()
            self.transitions_down = nn.ModuleList()
            skips = []
            for n in cfg["down"]:
                self.layers_down.append(DenseBlock(c, g, n, new_only=False))
                c += g * n
                skips.insert(0, c)
                self.transitions_down.append(TransitionDown(c, int(c * cfg["compression"])))
                c = int(c * cfg["compression"])
            self.bottleneck = DenseBlock(c, g, cfg["bottleneck"], new_only=True)
            prev = g * cfg["bottleneck"]
            self.transitions_up = nn.ModuleList()
            self.layers_up = nn.ModuleList()
            last = len(cfg["up"]) - 1
            for i, n in enumerate(cfg["up"]):
                self.transitions_up.append(TransitionUp(prev))
                c = prev + skips[i]
                self.layers_up.append(DenseBlock(c, g, n, new_only=i != last))
                prev = g * n
            self.final_conv = nn.Conv2d(c + g * cfg["up"][-1], out_channels, kernel_size=1, bias=False)

        def forward(self, x):
            x = self.conv_init(x)
            skips = []
            for block, down in zip(self.layers_down, self.transitions_down):
                x = block(x)
                skips.append(x)
                x = down(x)
            x = self.bottleneck(x)
            for up, block in zip(self.transitions_up, self.layers_up):
                x = block(up(x, skips.pop()))
            return self.final_conv(x)

    _ = F
    return DenseUNet()


def conv_flops(torch, net, batch, size):
    """Forward FLOPs (2 x MACs) of all convolutions of `net` for one batch."""
    total = [0]

    def hook(mod, _inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += 2 * out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net.eval()
        net(torch.zeros(batch, 1, size, size))
        net.train()
    for h in handles:
        h.remove()
    return total[0]


def main():
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        import torch
    except ImportError:
        fail("PyTorch is not installed for this Python "
             f"({sys.executable}); install it with "
             "`pip install torch --index-url https://download.pytorch.org/whl/cpu` "
             "(or `pip install torch`), or run bench/train-step, which sets up bench/.venv", code=3)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    net_a = build(torch, args.preset)
    net_b = build(torch, args.preset)
    params = sum(p.numel() for p in net_a.parameters() if p.requires_grad)
    expected = PRESETS[args.preset]["params"]
    if params != expected:
        fail(f"the {args.preset} network has {params} parameters, expected {expected} (comir's count)", 4)

    if args.save_weights:
        try:
            from safetensors.torch import save_file
        except ImportError:
            fail("--save-weights needs the `safetensors` package (pip install safetensors)", 3)
        cfg = {k: v for k, v in PRESETS[args.preset].items() if k != "params"}
        state = {k: v.detach().contiguous() for k, v in net_a.state_dict().items()}
        save_file(state, args.save_weights, metadata={
            "format": "pt", "preset": args.preset, "config": json.dumps(cfg), "in_channels": "1",
            "out_channels": "1", "seed": "0", "torch": torch.__version__})
        print(f"saved {len(state)} tensors of network A to {args.save_weights}", file=sys.stderr)

    flops_fwd = conv_flops(torch, net_a, args.batch, args.size)
    result = {"impl": "pytorch", "version": torch.__version__, "backend": "torch-cpu",
              "preset": args.preset, "batch": args.batch, "size": args.size,
              "threads": torch.get_num_threads(), "warmup": args.warmup, "steps": args.steps,
              "params": params, "conv_gflop_fwd_per_net": flops_fwd / 1e9,
              # forward + input gradients + weight gradients ~ 3x forward, for both networks
              "train_gflop_per_step": 6 * flops_fwd / 1e9,
              "loss": "loop" if args.loop_loss else "matmul", "clip": "total-norm per network",
              # ATen's vector kernels (ATEN_CPU_CAPABILITY caps it; ONEDNN_MAX_CPU_ISA caps oneDNN's)
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
    if args.steps == 0:
        print(json.dumps(result))
        return

    opts = [torch.optim.SGD(n.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-5)
            for n in (net_a, net_b)]
    tau, l1, l2 = 0.5, 1e-4, 1e-4
    gen = torch.Generator().manual_seed(0xC04D1A55)

    # Deterministic image-like patches in [0, 1], B an inverted copy, like the comir example.
    n, s = args.batch, args.size
    ys, xs = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    a = []
    for k in range(n):
        v = (0.5 + 0.25 * torch.sin(6.0 * xs / s + k) * torch.cos(4.0 * ys / s)
             + 0.2 * (((xs * 7919 + ys * 104729 + k * 31) % 101).float() / 101.0 - 0.5))
        a.append(v.clamp(0, 1))
    xa = torch.stack(a)[:, None].float()
    xb = 1.0 - xa * xa

    def rotate(x, ks):
        return torch.stack([torch.rot90(x[i], int(ks[i]), dims=(1, 2)) for i in range(x.shape[0])])

    def similarity(z):
        # S[i, j] = -mean((z_i - z_j)^2), the mse critic
        if args.loop_loss:
            m = z.shape[0]
            sim = torch.zeros(m, m)
            for i in range(m):
                for j in range(i, m):
                    sim[i, j] = sim[j, i] = -(z[i] - z[j]).pow(2).mean()
            return sim
        sq = z.pow(2).sum(1, keepdim=True)
        return -(sq + sq.t() - 2.0 * z @ z.t()) / z.shape[1]

    def act_decay(outs, p):
        total = sum(o.abs().pow(p).sum() for o in outs)
        return (1.0 + total) / sum(o.numel() for o in outs)

    def step():
        for o in opts:
            o.zero_grad()
        ka = torch.randint(0, 4, (n,), generator=gen)
        kb = torch.randint(0, 4, (n,), generator=gen)
        la = net_a(rotate(xa, ka))
        lb = net_b(rotate(xb, kb))
        za, zb = rotate(la, -ka), rotate(lb, -kb)
        z = torch.cat([za, zb]).reshape(2 * n, -1)
        sim = similarity(z) / tau
        m = 2 * n
        idx = torch.arange(m)
        pos = sim[idx, (idx + n) % m]
        masked = sim.masked_fill(torch.eye(m, dtype=torch.bool), float("-inf"))
        contrastive = (torch.logsumexp(masked, 1) - pos).mean()
        loss = contrastive + l1 * act_decay([la, lb], 1) + l2 * act_decay([la, lb], 2)
        loss.backward()
        for net, o in zip((net_a, net_b), opts):
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            o.step()
        return float(loss.detach())

    result["rss_before_mib"] = rss_mib("VmRSS")
    times, cpu_times, losses = [], [], []
    for i in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        kind = "warm-up" if i < args.warmup else "timed"
        print(f"pytorch {kind} step {i}: {dt:.3f} s, loss {loss:.5f}", file=sys.stderr)
        losses.append(loss)
        if i >= args.warmup:
            times.append(dt)
            cpu_times.append(cpu)
    def median(values):
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    result.update({
        "median_s": median(times), "step_s": times, "losses": losses,
        # user + system time of all threads (OpenMP threads may spin-wait, which counts here)
        "cpu_median_s": median(cpu_times),
        # ru_maxrss is in KiB on Linux
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
