import subprocess, time, os, sys
env = dict(os.environ, XDG_RUNTIME_DIR="/tmp")
p = subprocess.Popen([sys.argv[1], "bench", "--serve", "--search", "small", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
while True:
    l = p.stdout.readline()
    if "ready" in l: break
def cpu():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f)); return v[3]+v[4], sum(v)
for i in range(4):
    i0, t0 = cpu(); w0=time.time()
    p.stdin.write("\n"); p.stdin.flush(); ms = p.stdout.readline().strip()
    i1, t1 = cpu(); w1=time.time()
    print(f"step {ms} ms  wall {1000*(w1-w0):.0f}  idle {(i1-i0)/(t1-t0):.3f}")
p.stdin.close(); p.wait()
