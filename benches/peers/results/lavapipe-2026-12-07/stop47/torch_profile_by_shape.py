import sys; sys.path.insert(0, 'benches/peers')
import torch, supernet_torch as st
from torch.profiler import ProfilerActivity, profile
torch.set_num_threads(2)
dev = torch.device('cpu')
s = st.Search(st.CONFIGS['bench-small'], dev)
s.arch_step(); s.weight_step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    s.arch_step(); s.weight_step()
rows = []
for e in prof.key_averages(group_by_input_shape=True):
    if e.self_cpu_time_total > 0:
        rows.append((e.self_cpu_time_total/1e3, e.count, e.key, str(e.input_shapes)[:90]))
for r in sorted(rows, reverse=True)[:400]:
    print(f"{r[0]:8.1f} ms {r[1]:5d}x {r[2][:38]:38s} {r[3]}")
