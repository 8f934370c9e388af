"""The mpi4py side of bench/cold.ts: bench/cold-app.ts in Python.

Right after `from mpi4py import MPI` (which initializes MPI), CHUNKS chunks of
PER operations are timed (cold), then WARMUP more run untimed and CHUNKS
chunks are timed again (steady). Rank 0 prints the same JSON line as the mprun
app: microseconds per operation per chunk (latency: one way). The calls are
mpi4py's buffer interface (Barrier, Allreduce of a one-element array('d'),
Send/Recv of 8 bytes), its fast path; no NumPy needed.

    mpirun -np N python3 cold_peer.py latency|barrier|allreduce [CHUNKS [PER [WARMUP]]]
"""
import json
import sys
from array import array

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
size = comm.Get_size()
kind = sys.argv[1] if len(sys.argv) > 1 else ''
chunks = int(sys.argv[2]) if len(sys.argv) > 2 else 16
per = int(sys.argv[3]) if len(sys.argv) > 3 else 500
warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
if kind not in ('latency', 'barrier', 'allreduce') or chunks < 1 or per < 1 or warmup < 0 or (kind == 'latency' and size < 2):
    if rank == 0:
        sys.stderr.write('usage: cold_peer.py latency|barrier|allreduce [CHUNKS [PER [WARMUP]]] (latency: 2 ranks or more)\n')
    comm.Abort(2)

total = chunks + (warmup + per - 1) // per + chunks
sec = []
total_sum = 0.0
wtime = MPI.Wtime

if kind == 'barrier':
    for c in range(total):
        t0 = wtime()
        for i in range(per):
            comm.Barrier()
        sec.append(wtime() - t0)
elif kind == 'allreduce':
    r = array('d', [0.0])
    for c in range(total):
        t0 = wtime()
        for i in range(per):
            comm.Allreduce(array('d', [i]), r, op=MPI.SUM)
            total_sum += r[0]
        sec.append(wtime() - t0)
elif rank < 2:
    buf = bytearray([rank + 1] * 8)
    into = bytearray(8)
    for c in range(total):
        t0 = wtime()
        for i in range(per):
            if rank == 0:
                comm.Send(buf, dest=1, tag=1)
                comm.Recv(into, source=1, tag=1)
            else:
                comm.Recv(into, source=0, tag=1)
                comm.Send(buf, dest=0, tag=1)
        sec.append(wtime() - t0)

if kind == 'allreduce' and total_sum != size * total * per * (per - 1) / 2:
    sys.stderr.write(f'cold_peer.py: allreduce summed to {total_sum}\n')
    comm.Abort(1)
if rank == 0:
    div = 2 * per if kind == 'latency' else per
    us = [round(s * 1e6 / div, 4) for s in sec]
    print(json.dumps({'system': 'mpi4py', 'kind': kind, 'ranks': size, 'per': per, 'cold': us[:chunks], 'steady': us[total - chunks:]}), flush=True)
