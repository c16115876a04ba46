// The memory leaker of the soak test (bench/soak.ts): grows ~RATE MB/s (argv[2], default 150), touching
// every page so it counts in RSS, printing [HEARTBEAT] lines so it is never the stall clock that kills it.
const rate = Number(process.argv[2] ?? 150) * 1024 * 1024;
const stepMs = 20;
const chunk = Math.max(4096, Math.floor((rate * stepMs) / 1000));
const held = [];
let steps = 0;
setInterval(() => {
  const buffer = Buffer.allocUnsafe(chunk);
  buffer.fill(steps & 0xff);
  held.push(buffer);
  steps += 1;
  if (steps % 5 === 0) console.log(`[HEARTBEAT] ${steps}/1000000`);
}, stepMs);
