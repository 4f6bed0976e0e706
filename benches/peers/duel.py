#!/usr/bin/env python3
"""gradnas's bench-small bilevel step against its PyTorch peer's, alternated
step by step in one run (issue 8): both programs stay resident
(`gradnas bench --serve`, `supernet_torch.py --serve`) and take one step in
turn, each waiting while the other runs, so each round's ratio compares two
steps taken seconds apart. On a shared host whose speed drifts by a third
within minutes, sequential runs (compare.sh) bound the ratio only loosely;
the median of the rounds' ratios does not drift with the host.

    benches/peers/duel.py [--rounds 10] [--config bench-small] [--json FILE]

Environment as compare.sh: TORCH_PYTHON (default /tmp/torchenv/bin/python),
GRADNAS (a built gradnas binary; default target/release/gradnas), THREADS
(PyTorch's threads; default the number of cores), DEVICE (PyTorch's: cpu,
or cuda beside gradnas on the same GPU). The order alternates
(gradnas first in even rounds, PyTorch first in odd ones). Not part of CI.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEARCH = {"bench-small": "small", "bench-medium": "medium"}


class Server:
    """A resident program that takes a step per line and answers its ms."""

    def __init__(self, name, argv):
        self.name = name
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        line = self.p.stdout.readline().strip()
        if line != "ready":
            self.p.kill()
            sys.exit(f"duel.py: {name} did not start (said {line!r}; its stderr is above)")

    def step(self):
        self.p.stdin.write("step\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        try:
            return float(line)
        except ValueError:
            sys.exit(f"duel.py: {self.name} answered {line!r} (its stderr is above)")

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--config", default="bench-small", choices=sorted(SEARCH))
    ap.add_argument("--json", metavar="FILE", help="also write the rounds and medians here")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    py = os.environ.get("TORCH_PYTHON", "/tmp/torchenv/bin/python")
    gradnas = os.environ.get("GRADNAS", os.path.join(ROOT, "target/release/gradnas"))
    threads = os.environ.get("THREADS", str(os.cpu_count()))
    device = os.environ.get("DEVICE", "cpu")
    for path, what in ((py, "TORCH_PYTHON"), (gradnas, "GRADNAS")):
        if not os.access(path, os.X_OK):
            sys.exit(f"duel.py: {path} is not executable; set {what}")
    print(f"duel.py: starting gradnas and PyTorch ({args.config})", file=sys.stderr)
    g = Server("gradnas", [gradnas, "bench", "--serve", "--search", SEARCH[args.config]])
    t = Server(
        "PyTorch",
        [py, os.path.join(HERE, "supernet_torch.py"), "--serve", "--config", args.config,
         "--threads", threads, "--device", device],
    )
    rounds = []
    for r in range(args.rounds):
        if r % 2 == 0:
            gm, tm = g.step(), t.step()
        else:
            tm, gm = t.step(), g.step()
        rounds.append({"gradnas_ms": gm, "torch_ms": tm, "ratio": gm / tm})
        print(f"round {r}: gradnas {gm:,.0f} ms, PyTorch {tm:,.0f} ms, ratio {gm / tm:.3f}",
              flush=True)
    g.close()
    t.close()
    med = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
    print(
        f"median of {len(rounds)} rounds: gradnas {med['gradnas_ms']:,.0f} ms, PyTorch "
        f"{med['torch_ms']:,.0f} ms; median ratio gradnas/PyTorch {med['ratio']:.3f} "
        f"(rounds {min(x['ratio'] for x in rounds):.3f}–{max(x['ratio'] for x in rounds):.3f})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": args.config, "threads": int(threads), "device": device,
                       "rounds": rounds, "median": med}, f, indent=2)


if __name__ == "__main__":
    main()
