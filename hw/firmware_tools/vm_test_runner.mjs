// Run a module's test_* functions on the real MicroPython VM (the official WebAssembly build).
//
//   node hw/firmware_tools/vm_test_runner.mjs --vm MICROPYTHON_MJS --path firmware \
//       --path tests/firmware/mpy [--heap BYTES] MODULE
//
// Each --path directory's .py files are copied into the VM's in-memory filesystem
// (/lib0, /lib1, ... in the order given, first on sys.path). Prints "PASS name" or
// "FAIL name: traceback" per test and "N passed, M failed" last; exits 0 only if every
// test passed and at least one ran. --vm names the npm package's module, wherever it was
// installed (hw/engines/mpy/vm_package.py).
//
// The VM gets a ``simpul_host`` module answering the one call of the VM engine's bridge
// that firmware code makes without a board (vm_host.mjs: ``aes``, for the VM engine's
// cryptolib, hw/engines/mpy/rom/cryptolib.py, on --path hw/engines/mpy/rom).

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { hostCall } from "./vm_host.mjs";

function parseArgs(argv) {
  const opts = { vm: null, paths: [], heap: 1024 * 1024, module: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--vm") opts.vm = argv[++i];
    else if (arg === "--path") opts.paths.push(argv[++i]);
    else if (arg === "--heap") opts.heap = parseInt(argv[++i], 10);
    else if (!arg.startsWith("--") && opts.module === null) opts.module = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!opts.vm || !opts.module || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(opts.module)) {
    throw new Error("usage: vm_test_runner.mjs --vm MICROPYTHON_MJS --path DIR ... [--heap BYTES] MODULE");
  }
  if (!(opts.heap > 0)) throw new Error("--heap needs a positive number of bytes");
  return opts;
}

// Runs inside the VM: import the module, call each test_* in definition-name order.
const RUNNER = `
import sys
def _simpul_run(name):
    mod = __import__(name)
    names = sorted(n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n)))
    passed = failed = 0
    for n in names:
        try:
            getattr(mod, n)()
            print("PASS " + n)
            passed += 1
        except Exception as e:
            print("FAIL " + n + ":")
            sys.print_exception(e)
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return failed == 0 and passed > 0
`;

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { loadMicroPython } = await import(pathToFileURL(opts.vm).href);
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stdout.write(line + "\n"),
  });
  mp.registerJsModule("simpul_host", { call: hostCall });
  const libs = [];
  opts.paths.forEach((dir, i) => {
    const target = `/lib${i}`;
    mp.FS.mkdir(target);
    for (const name of fs.readdirSync(dir)) {
      if (name.endsWith(".py")) {
        mp.FS.writeFile(`${target}/${name}`, fs.readFileSync(path.join(dir, name)));
      }
    }
    libs.push(target);
  });
  mp.runPython(`import sys\nsys.path[:0] = ${JSON.stringify(libs)}\n${RUNNER}`);
  let ok = false;
  try {
    mp.runPython(`_simpul_ok = _simpul_run(${JSON.stringify(opts.module)})`);
    ok = mp.globals.get("_simpul_ok") === true;
  } catch (err) {
    // An import error or a crash outside any test: the VM's traceback, not Node's stack.
    process.stdout.write(`FAIL ${opts.module} (import): ${err.message ?? err}\n0 passed, 1 failed\n`);
  }
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`vm_test_runner: ${err.message ?? err}\n`);
    process.exit(2);
  },
);
