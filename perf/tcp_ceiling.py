#!/usr/bin/env python3
"""The loopback TCP ceiling for a 2-rank all-reduce over sockets on this machine.

A 2-rank all-reduce of B bytes makes each rank send B bytes and receive B bytes (the ring's two
halves, or recursive doubling's one exchange), at once in both directions. This measures exactly
that traffic with nothing else: two processes, one TCP loopback connection (TCP_NODELAY, kernel
autotuned buffers), each sending B while it receives B, no reduction and no copy of its own. B/t
is then an upper bound on any such all-reduce's busbw here (busbw = algbw at 2 ranks).
  perf/tcp_ceiling.py [MiB=256] [runs=5]
"""
import os
import socket
import statistics
import sys
import threading
import time

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
size = mib << 20
chunk = 4 << 20


def exchange(sock, out, into):
    view = memoryview(into)

    def send():
        sock.sendall(out)

    t = threading.Thread(target=send)
    t.start()
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(chunk, size - got))
        if n == 0:
            raise RuntimeError("peer closed")
        got += n
    t.join()


listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]
pid = os.fork()
if pid == 0:
    s = socket.create_connection(("127.0.0.1", port))
else:
    s, _ = listener.accept()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
out, into = bytearray(os.urandom(1 << 20)) * mib, bytearray(size)
times = []
for _ in range(runs + 1):  # the first run warms up the connection and the buffers
    s.sendall(b"g")  # a barrier: both sides start together
    s.recv(1)
    t0 = time.perf_counter()
    exchange(s, out, into)
    times.append(time.perf_counter() - t0)
if pid != 0:
    os.waitpid(pid, 0)
    t = statistics.median(times[1:])
    print(f"tcp loopback, 2 processes, {mib} MiB each way at once: median {t * 1e3:.1f} ms over {runs} runs "
          f"-> ceiling busbw {size / t / 1e9:.2f} GB/s")
