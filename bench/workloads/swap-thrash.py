# Scenario 3: keeps RSS low while pushing its pages to swap: maps BENCH_SWAP_MB of private anonymous
# memory and, BENCH_STEP_MB at a time, touches it and asks the kernel to page it out (madvise
# MADV_PAGEOUT = 21). Once all of it is in swap it holds it there, re-logging its state, so the swap use
# ends well past any limit the scenario sets (the scenario sizes it at 4x the limit) instead of stopping
# at one. A state line follows every step, so the log sees each 4 MiB of growth.
import json, mmap, os, time, ctypes

MADV_PAGEOUT = 21
MiB = 1024 * 1024
size = int(os.environ.get("BENCH_SWAP_MB", "256")) * MiB
step = int(os.environ.get("BENCH_STEP_MB", "4")) * MiB
log_path = os.environ.get("BENCH_STATE_LOG")
libc = ctypes.CDLL(None, use_errno=True)

def state():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmSwap:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) * 1024
    return {"rss": fields.get("VmRSS", 0), "swap": fields.get("VmSwap", 0)}

def log(event, **fields):
    if log_path:
        with open(log_path, "a") as out:
            out.write(json.dumps({"t": int(time.time() * 1000), "pid": os.getpid(), "event": event, **fields}) + "\n")

region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
log("start", **state())
for offset in range(0, size, step):
    # Touch the next step, then page it out: swap grows ~step per round while RSS stays small.
    end = min(offset + step, size)
    for page in range(offset, end, 4096):
        region[page] = 1
    if libc.madvise(ctypes.c_void_p(base + offset), ctypes.c_size_t(end - offset), MADV_PAGEOUT) != 0:
        log("madvise-failed", errno=ctypes.get_errno(), **state())
    log("swap", **state())
    time.sleep(0.02)
log("held", **state())
while True:
    time.sleep(0.5)
    log("swap", **state())
