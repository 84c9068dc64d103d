#!/usr/bin/env python3
"""Writes PyTorch DenseUNet weights (the network of bench/pytorch_train_step.py, which has the
official CoMIR's structure and state_dict key names) as safetensors, for `comir import-torch`.

  export_torch_weights.py --preset small --out DIR          # DIR/a.safetensors, DIR/b.safetensors
  export_torch_weights.py --tiny --out DIR --check          # the test fixture: a tiny network
                                                            # plus DIR/check.safetensors

Batch-norm statistics and affine parameters are randomised (a freshly built network has
trivial ones, which would not test their import). With --check, DIR/check.safetensors holds an
input for each network and PyTorch's eval-mode output on it, so that comir can check that the
imported networks compute the same thing.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_train_step as bench  # noqa: E402

# The fixture's network (in comir: init_filters 4, down [1, 1], up [1, 1], bottleneck 1,
# growth 4, compression 0.75; 2 representation channels).
TINY = dict(init=4, down=(1, 1), bottleneck=1, up=(1, 1), growth=4, compression=0.75)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(bench.PRESETS), default="small")
    p.add_argument("--tiny", action="store_true", help="the test fixture's tiny network")
    p.add_argument("--in-a", type=int, default=1, help="input channels of network A")
    p.add_argument("--in-b", type=int, default=1, help="input channels of network B")
    p.add_argument("--out-channels", type=int, default=1, help="representation channels D")
    p.add_argument("--size", type=int, default=32, help="side of the --check inputs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(a.seed)
    cfg = TINY if a.tiny else a.preset
    os.makedirs(a.out, exist_ok=True)
    check = {}
    for name, cin in (("a", a.in_a), ("b", a.in_b)):
        net = bench.build(torch, cfg, in_channels=cin, out_channels=a.out_channels)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        save_file(state, os.path.join(a.out, f"{name}.safetensors"))
        if a.check:
            net.eval()
            x = torch.rand(1, cin, a.size, a.size)
            with torch.no_grad():
                y = net(x)
            check[f"input_{name}"] = x.contiguous()
            check[f"output_{name}"] = y.contiguous()
    if a.check:
        save_file(check, os.path.join(a.out, "check.safetensors"))
    print(f"wrote {a.out}/a.safetensors and b.safetensors" + (" and check.safetensors" if a.check else ""))


if __name__ == "__main__":
    main()
