import re,sys,collections
def load(f):
    fam=collections.Counter()
    for l in open(f):
        m=re.match(r'\s+(\S+)\s+(\d+) dispatches\s+(\d+) wg\s+([\d.]+) ms',l)
        if not m: continue
        name=m.group(1); ms=float(m.group(4))
        parts=name.split('.')
        if name.startswith('conv2d_rows'):
            dirn=[p for p in parts[2:] if p in('y','dx','dw')]
            k=f"conv {parts[1]} {parts[2]} {'s2' if any(p.startswith('s2') for p in parts) else ''} {dirn[0] if dirn else '?'}"
        else: k=name.split('::')[0]
        fam[k]+=ms
    return fam
fs=[load(f) for f in sys.argv[1:]]
keys=sorted(fs[0],key=lambda k:-fs[0][k])[:28]
print(f"{'':40s}"+"".join(f"{a.split('/')[-1][:10]:>11s}" for a in sys.argv[1:]))
for k in keys: print(f"{k:40s}"+"".join(f"{f[k]:11.1f}" for f in fs))
print(f"{'total':40s}"+"".join(f"{sum(f.values()):11.1f}" for f in fs))
