#!/usr/bin/env python3
"""Prints N (default 1) distinct free TCP ports on 127.0.0.1, one per line.

The ports are taken from below the kernel's ephemeral range (ip_local_port_range), not from
bind(0): a port bind(0) hands out is in the ephemeral range, and until the server that gets
it binds it (kwok starts tens of seconds after up.sh picks its port) any outgoing connection
may take it ("bind: address already in use"). Outgoing connections never use ports below the
range, so only another server binding that exact port could collide.
"""
import random
import socket
import sys

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
except (OSError, ValueError):
    low, high = 32768, 60999
start, end = (10000, low - 1) if low > 11000 else (high + 1, 65535)
want = int(sys.argv[1]) if len(sys.argv) > 1 else 1
picked = []
for _ in range(10000):
    if len(picked) == want:
        break
    port = random.randint(start, end)
    if port in picked:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    picked.append(port)
if len(picked) < want:
    sys.exit(f"free-port.py: found only {len(picked)} free ports in {start}-{end}")
print("\n".join(map(str, picked)))
