#!/usr/bin/env python3
"""Times CoMIR inference: `comir represent` against PyTorch on the same network and weights.

Run through bench/inference (which builds comir and finds a Python with torch). Steps:
 1. random weights of the preset are written by PyTorch (export_torch_weights.py) and imported
    into comir (`comir import-torch`), so both sides run the same network;
 2. a smooth test image of --size² is written as an 8-bit PNG;
 3. comir: `comir represent` on it, --runs times (wall clock of the whole command: start-up,
    model loading, PNG reading, float TIFF writing included), peak resident memory of the child;
 4. PyTorch: the reference inference (MultiRegEval inference_comir.py: reflect-pad by 128 and to a
    multiple of 128, one forward pass in eval mode, no_grad), forward pass only, --runs times after
    one warm-up, same thread count;
 5. optionally (--big N) comir alone on an N² image, tiled, with its peak memory.

comir runs the kernels of the widest instruction set the CPU has; --isa all (or a list such as
avx512,avx2) times each of them (COMIR_ISA), one row and one `inference_ratio_vs_pytorch[ISA]=R`
line each. Prints a table and, last, `inference_ratio_vs_pytorch=R` (comir median / PyTorch
median, for the first instruction set timed).
"""

import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


def write_png(path, width, height, value):
    """8-bit gray PNG, pixel (x, y) = value(x, y) in 0..255 (rows generated one by one)."""
    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    comp = zlib.compressobj(6)
    parts = []
    for y in range(height):
        parts.append(comp.compress(b"\x00" + value(y, width)))
    parts.append(comp.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))


def pattern_row(y, width):
    # Smooth structure at several scales, so the network sees something image-like.
    import numpy as np
    x = np.arange(width)
    v = 127 + 60 * np.sin(x / 23.0) * np.cos(y / 31.0) + 40 * np.sin((x + 2 * y) / 7.0)
    return np.clip(v, 0, 255).astype(np.uint8).tobytes()


def run_child(cmd, env=None):
    """Wall seconds and peak RSS (MiB) of a child process. The peak is VmHWM of the child's
    /proc status, read every 20 ms (the rusage of a forked child would count the parent's pages
    it carried until exec: after PyTorch has run, gigabytes that comir never touches)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0.0
    status_file = f"/proc/{p.pid}/status"
    while p.poll() is None:
        try:
            with open(status_file) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024.0)
        except OSError:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode != 0:
        sys.exit(f"inference: {' '.join(cmd)} failed: {err.strip()}")
    return wall, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comir", required=True, help="the comir binary")
    ap.add_argument("--peak", required=True, help="comir-cpu's `peak` example (instruction sets, FP32 peak)")
    ap.add_argument("--preset", choices=["histology", "small", "fast"], default="histology")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--big", type=int, default=0, help="also time comir alone on a BIG² image")
    ap.add_argument("--skip-pytorch", action="store_true")
    ap.add_argument("--isa", default="",
                    help="time comir on these instruction sets (comma list, or 'all' the CPU runs); "
                         "default: the widest it runs, or $COMIR_ISA")
    a = ap.parse_args()

    import torch
    from safetensors.torch import load_file
    import pytorch_train_step as bench

    with tempfile.TemporaryDirectory(prefix="comir-inference-") as tmp:
        measure(a, tmp, torch, load_file, bench)


def measure(a, tmp, torch, load_file, bench):
    weights = os.path.join(tmp, "weights")
    subprocess.run([sys.executable, os.path.join(here, "export_torch_weights.py"), "--preset", a.preset,
                    "--out", weights], check=True, stdout=subprocess.DEVNULL)
    model = os.path.join(tmp, "model")
    subprocess.run([a.comir, "import-torch", "--a", os.path.join(weights, "a.safetensors"),
                    "--b", os.path.join(weights, "b.safetensors"), "--preset", a.preset, "--out", model],
                   check=True, stdout=subprocess.DEVNULL)
    img = os.path.join(tmp, f"image{a.size}.png")
    write_png(img, a.size, a.size, pattern_row)

    # The instruction sets and the FP32 peak as comir-cpu sees them (bench/inference builds the
    # `peak` example next to the binary).
    cpu = json.loads(subprocess.run([a.peak, str(a.threads)], check=True, capture_output=True,
                                    text=True).stdout)
    runs_on, detected = cpu["available"], cpu["detected"]
    if a.isa == "all":
        isas = list(reversed(runs_on))
    elif a.isa:
        isas = a.isa.split(",")
    else:
        isas = [os.environ.get("COMIR_ISA") or detected]
    peak = f"{cpu['peak_gflops']:.0f} GFLOP/s ({cpu['peak_source']})"
    if cpu.get("measured_gflops"):
        peak += "; measured " + ", ".join(f"{k} {v:.0f}" for k, v in cpu["measured_gflops"].items())

    out = os.path.join(tmp, "rep.tif")
    cmd = [a.comir, "represent", "--model", model, "--modality", "a", "--input", img, "--out", out]
    comir = {}
    for isa in isas:
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), COMIR_ISA=isa)
        run_child(cmd, env)  # warm-up (page cache)
        comir_runs = [run_child(cmd, env) for _ in range(a.runs)]
        comir[isa] = (statistics.median(w for w, _ in comir_runs), max(m for _, m in comir_runs))
    comir_s, comir_mib = comir[isas[0]]
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), COMIR_ISA=isas[0])

    torch_s = float("nan")
    torch_mib = float("nan")
    if not a.skip_pytorch:
        torch.set_num_threads(a.threads)
        net = bench.build(torch, a.preset)
        net.load_state_dict(load_file(os.path.join(weights, "a.safetensors")))
        net.eval()
        x = torch.rand(1, 1, a.size, a.size)
        pad = (128 - a.size % 128) % 128
        xp = torch.nn.functional.pad(x, (128, 128 + pad, 128, 128 + pad), mode="reflect")
        def timed(inp):
            times = []
            with torch.no_grad():
                net(inp)
                for _ in range(a.runs):
                    t = time.perf_counter()
                    net(inp)
                    times.append(time.perf_counter() - t)
            return statistics.median(times)
        torch_s = timed(xp)
        # The same pixels as comir's one pass (32 px mirror margin rounded up to a multiple of
        # 2^depth, and the side up to one), when that is a single tile: the per-pixel speed of
        # the two implementations.
        multiple = 2 ** len(bench.PRESETS[a.preset]["down"])
        m = -(-32 // multiple) * multiple
        side = a.size + 2 * m
        side += (-side) % multiple
        same = None
        if side <= 640:
            xs = torch.nn.functional.pad(x, (m, side - a.size - m, m, side - a.size - m), mode="reflect")
            same = timed(xs)
        torch_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        padded = xp.shape[-1]
    params = sum(p.numel() for p in bench.build(torch, a.preset).parameters())

    print(f"preset {a.preset} ({params:,} parameters), image {a.size}x{a.size}, {a.threads} threads, "
          f"median of {a.runs}")
    print(f"instruction sets: the CPU runs {', '.join(runs_on)}; FP32 peak {peak}")
    print(f"{'':14} {'seconds':>9} {'peak MiB':>9}  what")
    for isa, (sec, mib) in comir.items():
        forced = "" if isa == detected else ", forced by COMIR_ISA"
        print(f"{'comir ' + isa:14} {sec:9.3f} {mib:9.0f}  whole `comir represent` command (start-up, "
              f"I/O, mirror margin, tiles <= 640{forced})")
    if not a.skip_pytorch:
        print(f"{'pytorch':14} {torch_s:9.3f} {torch_mib:9.0f}  forward pass only, reference padding "
              f"({a.size} -> {padded})")
        if same is not None:
            print(f"{'pytorch':14} {same:9.3f} {'':>9}  forward pass only on comir's padded size "
                  f"({side}); comir / this = {comir_s / same:.3f}")
    if a.big:
        big = os.path.join(tmp, f"image{a.big}.png")
        write_png(big, a.big, a.big, pattern_row)
        bw, bm = run_child([a.comir, "represent", "--model", model, "--modality", "a", "--input", big,
                            "--out", os.path.join(tmp, "big.tif")], env)
        print(f"{'comir big':14} {bw:9.1f} {bm:9.0f}  {a.big}x{a.big}, tiled ({isas[0]})")
    for isa, (sec, _) in comir.items():
        print(f"inference_ratio_vs_pytorch[{isa}]={sec / torch_s:.3f}")
    print(f"inference_ratio_vs_pytorch={comir_s / torch_s:.3f}")


if __name__ == "__main__":
    main()
