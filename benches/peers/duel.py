#!/usr/bin/env python3
"""gradnas's bench-small bilevel step against its PyTorch peer's, alternated
step by step in one run (issue 8): both programs stay resident
(`gradnas bench --serve`, `supernet_torch.py --serve`) and take one step in
turn, each waiting while the other runs, so each round's ratio compares two
steps taken seconds apart. On a shared host whose speed drifts by a third
within minutes, sequential runs (compare.sh) bound the ratio only loosely;
the median of the rounds' ratios does not drift with the host.

    benches/peers/duel.py [--rounds 10] [--config bench-small] [--json FILE]
                          [--variant NAME:VAR=VALUE[,VAR=VALUE...]]...

Each --variant adds another resident gradnas with those environment
variables set (a setting, LP_NUM_THREADS, another Vulkan driver through
VK_ICD_FILENAMES and LD_LIBRARY_PATH, or GRADNAS=path: another build of
gradnas, e.g. before and after a change): all programs take one step per
round, the order rotating, and each gradnas's ratio to PyTorch and to the
first gradnas is reported.

Environment as compare.sh: TORCH_PYTHON (default /tmp/torchenv/bin/python),
GRADNAS (a built gradnas binary; default target/release/gradnas), THREADS
(PyTorch's threads; default the number of cores), DEVICE (PyTorch's: cpu,
or cuda beside gradnas on the same GPU). The order rotates each round
(with two programs: gradnas first in even rounds, PyTorch first in odd
ones). Not part of CI.
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

    def __init__(self, name, argv, env=None):
        self.name = name
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env=env,
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


def variant(spec):
    """NAME:VAR=VALUE[,VAR=VALUE...] as (name, {VAR: VALUE})."""
    name, _, assigns = spec.partition(":")
    env = {}
    for a in filter(None, assigns.split(",")):
        var, eq, value = a.partition("=")
        if not eq or not var:
            raise argparse.ArgumentTypeError(f"{a!r}: expected VAR=VALUE")
        env[var] = value
    if not name or name in ("gradnas", "torch") or not env:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected NAME:VAR=VALUE[,VAR=VALUE...] with a new NAME")
    return name, env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--config", default="bench-small", choices=sorted(SEARCH))
    ap.add_argument("--json", metavar="FILE", help="also write the rounds and medians here")
    ap.add_argument("--variant", type=variant, action="append", default=[],
                    metavar="NAME:VAR=VALUE,...",
                    help="another gradnas with these environment variables")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    names = [n for n, _ in args.variant]
    if len(set(names)) != len(names):
        ap.error("--variant names must differ")
    py = os.environ.get("TORCH_PYTHON", "/tmp/torchenv/bin/python")
    gradnas = os.environ.get("GRADNAS", os.path.join(ROOT, "target/release/gradnas"))
    threads = os.environ.get("THREADS", str(os.cpu_count()))
    device = os.environ.get("DEVICE", "cpu")
    for path, what in ((py, "TORCH_PYTHON"), (gradnas, "GRADNAS")):
        if not os.access(path, os.X_OK):
            sys.exit(f"duel.py: {path} is not executable; set {what}")
    # Each variant's build: its own GRADNAS, or the first gradnas's.
    binaries = {name: env.get("GRADNAS", gradnas) for name, env in args.variant}
    for name, binary in binaries.items():
        if not os.access(binary, os.X_OK):
            sys.exit(f"duel.py: variant {name}: {binary} is not executable")
    print(f"duel.py: starting gradnas{''.join(', ' + n for n in names)} and PyTorch "
          f"({args.config})", file=sys.stderr)
    serve = [gradnas, "bench", "--serve", "--search", SEARCH[args.config]]
    servers = [("gradnas", Server("gradnas", serve))]
    for name, env in args.variant:
        servers.append((name, Server(name, [binaries[name]] + serve[1:],
                                     dict(os.environ, **env))))
    servers.append(("torch", Server(
        "PyTorch",
        [py, os.path.join(HERE, "supernet_torch.py"), "--serve", "--config", args.config,
         "--threads", threads, "--device", device],
    )))
    gradnases = [n for n, _ in servers[:-1]]
    rounds = []
    for r in range(args.rounds):
        # The order rotates: with two programs, gradnas first in even rounds.
        k = r % len(servers)
        ms = {n: s.step() for n, s in servers[k:] + servers[:k]}
        row = {"gradnas_ms": ms["gradnas"], "torch_ms": ms["torch"],
               "ratio": ms["gradnas"] / ms["torch"]}
        for n in gradnases[1:]:
            row.update({f"{n}_ms": ms[n], f"{n}_ratio": ms[n] / ms["torch"],
                        f"{n}_vs_gradnas": ms[n] / ms["gradnas"]})
        rounds.append(row)
        print(f"round {r}: " + ", ".join(f"{n} {ms[n]:,.0f} ms" for n in gradnases)
              + f", PyTorch {ms['torch']:,.0f} ms; ratio " + ", ".join(
                  f"{n} {ms[n] / ms['torch']:.3f}" for n in gradnases), flush=True)
    for _, s in servers:
        s.close()
    med = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}

    def span(k):
        return f"{min(x[k] for x in rounds):.3f}–{max(x[k] for x in rounds):.3f}"

    print(
        f"median of {len(rounds)} rounds: gradnas {med['gradnas_ms']:,.0f} ms, PyTorch "
        f"{med['torch_ms']:,.0f} ms; median ratio gradnas/PyTorch {med['ratio']:.3f} "
        f"(rounds {span('ratio')})"
    )
    for n in gradnases[1:]:
        print(f"  {n}: {med[n + '_ms']:,.0f} ms; median ratio {n}/PyTorch "
              f"{med[n + '_ratio']:.3f} (rounds {span(n + '_ratio')}), {n}/gradnas "
              f"{med[n + '_vs_gradnas']:.3f} (rounds {span(n + '_vs_gradnas')})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": args.config, "threads": int(threads), "device": device,
                       "variants": dict(args.variant), "rounds": rounds, "median": med},
                      f, indent=2)


if __name__ == "__main__":
    main()
