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
line each. --torch-isa avx2 caps PyTorch's kernels too (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY),
so that `--isa avx2 --torch-isa avx2` on an AVX-512 machine compares both sides as an AVX2 machine
runs them. --rounds R repeats the whole sequence (every instruction set, then PyTorch) R times and
takes each ratio within its round (a virtual machine's speed drifts between minutes), reporting
their median. --torch-malloc keep (the default) runs PyTorch with glibc's malloc keeping freed
memory, as jemalloc or tcmalloc would (see bench/train-step); --torch-malloc glibc with the
defaults. Prints a table and, last, `inference_ratio_vs_pytorch=R` (comir median / PyTorch median,
for the first instruction set timed).
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
import threading
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
    # The wall time ends when the child does, taken by a thread that waits for it: the memory
    # polling below notices the end up to 20 ms late, a tenth of a fast run.
    ended = []
    waiter = threading.Thread(target=lambda: (p.wait(), ended.append(time.perf_counter())))
    waiter.start()
    peak = 0.0
    status_file = f"/proc/{p.pid}/status"
    while waiter.is_alive():
        try:
            with open(status_file) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024.0)
        except OSError:
            pass
        waiter.join(0.02)
    wall = ended[0] - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode != 0:
        sys.exit(f"inference: {' '.join(cmd)} failed: {err.strip()}")
    return wall, peak


# The environment that caps PyTorch's vector kernels at AVX2.
TORCH_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
# glibc's malloc keeping freed memory: read when the process starts.
KEEP_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184",
               "MALLOC_TOP_PAD_": "1073741824"}


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
    ap.add_argument("--torch-isa", choices=["avx512", "avx2"], default="avx512",
                    help="cap PyTorch's kernels at this instruction set (default: what it picks)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every instruction set and PyTorch this many times; ratios per round")
    ap.add_argument("--torch-malloc", choices=["keep", "glibc"], default="keep",
                    help="glibc's malloc keeping freed memory for PyTorch (default), or its defaults")
    a = ap.parse_args()
    if a.torch_malloc == "keep" and any(os.environ.get(k) != v for k, v in KEEP_MEMORY.items()):
        # PyTorch runs in this process, and glibc reads these when a process starts.
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, **KEEP_MEMORY))
    if a.runs < 1 or a.rounds < 1:
        sys.exit("inference: --runs and --rounds must be >= 1")
    if a.torch_isa == "avx2":
        # Read by ATen and oneDNN when torch first dispatches, so set before it is imported.
        os.environ.update(TORCH_AVX2)

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
    # comir's children do not inherit PyTorch's caps or malloc settings.
    base_env = {k: v for k, v in os.environ.items() if k not in TORCH_AVX2 and k not in KEEP_MEMORY}
    env_of = {isa: dict(base_env, RAYON_NUM_THREADS=str(a.threads), COMIR_ISA=isa) for isa in isas}
    for isa in isas:
        run_child(cmd, env_of[isa])  # warm-up (page cache)

    net = None
    if not a.skip_pytorch:
        torch.set_num_threads(a.threads)
        net = bench.build(torch, a.preset)
        net.load_state_dict(load_file(os.path.join(weights, "a.safetensors")))
        net.eval()
        x = torch.rand(1, 1, a.size, a.size)
        pad = (128 - a.size % 128) % 128
        xp = torch.nn.functional.pad(x, (128, 128 + pad, 128, 128 + pad), mode="reflect")
        padded = xp.shape[-1]

    def timed(inp):
        times = []
        with torch.no_grad():
            net(inp)
            for _ in range(a.runs):
                t = time.perf_counter()
                net(inp)
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    comir_runs = {isa: [] for isa in isas}
    torch_rounds = []
    ratios = {isa: [] for isa in isas}
    for r in range(a.rounds):
        if a.rounds > 1:
            print(f"== round {r + 1} of {a.rounds}", file=sys.stderr)
        medians = {}
        for isa in isas:
            got = [run_child(cmd, env_of[isa]) for _ in range(a.runs)]
            comir_runs[isa] += got
            medians[isa] = statistics.median(w for w, _ in got)
        if net is not None:
            torch_rounds.append(timed(xp))
            for isa in isas:
                ratios[isa].append(medians[isa] / torch_rounds[-1])
    comir = {isa: (statistics.median(w for w, _ in got), max(m for _, m in got))
             for isa, got in comir_runs.items()}
    comir_s, comir_mib = comir[isas[0]]
    env = env_of[isas[0]]

    torch_s = float("nan")
    torch_mib = float("nan")
    if net is not None:
        torch_s = statistics.median(torch_rounds)
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
    params = sum(p.numel() for p in bench.build(torch, a.preset).parameters())

    print(f"preset {a.preset} ({params:,} parameters), image {a.size}x{a.size}, {a.threads} threads, "
          f"median of {a.runs}")
    print(f"instruction sets: the CPU runs {', '.join(runs_on)}; FP32 peak {peak}")
    if net is not None:
        capped = " (capped by --torch-isa avx2)" if a.torch_isa == "avx2" else ""
        print(f"pytorch's vector kernels: {torch.backends.cpu.get_cpu_capability()}{capped}; "
              f"its malloc: {'keeps freed memory' if a.torch_malloc == 'keep' else 'glibc defaults'}"
              f" (--torch-malloc {a.torch_malloc})")
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
    # With rounds, each ratio is the median of the ratios taken within the rounds.
    ratio = {isa: (statistics.median(ratios[isa]) if ratios[isa] else float("nan")) for isa in isas}
    for isa in isas:
        if a.rounds > 1 and ratios[isa]:
            print(f"ratio per round [{isa}]: {', '.join(f'{v:.3f}' for v in ratios[isa])}")
        print(f"inference_ratio_vs_pytorch[{isa}]={ratio[isa]:.3f}")
    print(f"inference_ratio_vs_pytorch={ratio[isas[0]]:.3f}")


if __name__ == "__main__":
    main()
