// Run a Python harness on the real MicroPython VM one slice per call, for heap figures.
//
//   node hw/firmware_tools/vm_heap_slices.mjs --vm MICROPYTHON_MJS --path firmware \
//       --harness HARNESS.py [--heap BYTES]
//
// Each --path directory's .py and .mpy files are copied to /lib (first on sys.path). The harness file
// is run, then its tick() is called from here until it returns False, and the string its
// report() returns is printed last. Why one call per slice: this VM collects garbage only
// when control returns to JavaScript, never inside a call, so gc.mem_alloc() at the start of
// a call (after the collection the previous call asked for) is the live heap there
// (hw/firmware_tools/heap.py, tests/bench/board_verify.py).

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { hostCall } from "./vm_host.mjs";

function parseArgs(argv) {
  const opts = { vm: null, paths: [], heap: 1024 * 1024, harness: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--vm") opts.vm = argv[++i];
    else if (arg === "--path") opts.paths.push(argv[++i]);
    else if (arg === "--heap") opts.heap = parseInt(argv[++i], 10);
    else if (arg === "--harness") opts.harness = argv[++i];
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!opts.vm || !opts.harness) {
    throw new Error("usage: vm_heap_slices.mjs --vm MICROPYTHON_MJS --path DIR ... --harness FILE");
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { loadMicroPython } = await import(pathToFileURL(opts.vm).href);
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    stdout: (line) => process.stderr.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  mp.FS.mkdir("/lib");
  for (const dir of opts.paths) {
    for (const name of fs.readdirSync(dir)) {
      if (name.endsWith(".py") || name.endsWith(".mpy")) {
        mp.FS.writeFile(`/lib/${name}`, fs.readFileSync(path.join(dir, name)));
      }
    }
  }
  mp.registerJsModule("simpul_host", { call: hostCall }); // cryptolib's AES (vm_host.mjs)
  mp.runPython('import sys\nsys.path.insert(0, "/lib")');
  mp.runPython(fs.readFileSync(opts.harness, "utf8"));
  const tick = mp.globals.get("tick");
  while (tick()) {}
  process.stdout.write(mp.globals.get("report")() + "\n");
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`vm_heap_slices: ${err.message ?? err}\n`);
    process.exit(2);
  },
);
