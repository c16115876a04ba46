# Scenario 3: keeps RSS low while pushing its pages to swap: maps BENCH_SWAP_MB of private anonymous
# memory, touches it, then asks the kernel to page it out (madvise MADV_PAGEOUT = 21), again and again.
import json, mmap, os, time, ctypes

MADV_PAGEOUT = 21
size = int(os.environ.get("BENCH_SWAP_MB", "400")) * 1024 * 1024
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
address = ctypes.c_void_p.from_buffer(region)
base = ctypes.addressof(address)
chunk = 16 * 1024 * 1024
log("start", **state())
offset = 0
while True:
    # Touch the next chunk, then page it out: swap grows ~chunk per step while RSS stays small.
    end = min(offset + chunk, size)
    for page in range(offset, end, 4096):
        region[page] = 1
    libc.madvise(ctypes.c_void_p(base + offset), ctypes.c_size_t(end - offset), MADV_PAGEOUT)
    log("swap", **state())
    offset = end if end < size else 0
    time.sleep(0.05)
