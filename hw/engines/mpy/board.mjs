// One emulated board on the real MicroPython VM (the official WebAssembly build), for one boot.
//
//   node board.mjs --vm MICROPYTHON_MJS --rom DIR [--rom DIR ...] --events FD
//
// The host (host.py) owns the hardware. This process only runs the VM and carries
// messages, one JSON line each:
//
//   fd 1 (to the host)    "?" + request   a synchronous call from the VM; the host answers
//                                         one line on fd 0 before the VM goes on
//                         "!" + message   a notification, no answer: ["o", base64] VM output,
//                                         ["ready"], ["wdt"], ["end", traceback], ["done",
//                                         error text], ["heap", bytes], ["mark",
//                                         name, bytes]
//   fd 0 (from the host)  answer lines    [value], or {"e": errno} for an OSError; a leading
//                                         "K" asks for a KeyboardInterrupt in the VM
//   events fd (host)      ["d", link, hex] a datagram arrived on a link
//                         ["m", cause] start the firmware; ["s"] stop it; ["h"] reset the
//                         heap peak; ["x", source, single] run REPL code
//
// Reading fd 0 with fs.readSync blocks, so bus transactions and flash writes are synchronous
// in the VM as on the chip; events arrive only while the VM waits in asyncio, as on a board.
// The .py files of every --rom directory go to the VM's /rom, the factory application; then
// vmboard runs the firmware's boot.py, which puts the application slot it chooses on the
// flash before /rom on sys.path. --vm names the npm package's module, wherever it was
// installed (hw/engines/mpy/vm_package.py).

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function parseArgs(argv) {
  const opts = { vm: null, roms: [], events: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--vm") opts.vm = argv[++i];
    else if (argv[i] === "--rom") opts.roms.push(argv[++i]);
    else if (argv[i] === "--events") opts.events = parseInt(argv[++i], 10);
    else throw new Error(`unexpected argument ${argv[i]}`);
  }
  if (!opts.vm || !opts.roms.length || !(opts.events >= 0)) {
    throw new Error("usage: board.mjs --vm MICROPYTHON_MJS --rom DIR ... --events FD");
  }
  return opts;
}

function writeAll(fd, text) {
  const data = Buffer.from(text, "utf8");
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));
let output = [];
let outputFlushQueued = false;

function flushOutput() {
  if (output.length) {
    const chunk = Buffer.from(output).toString("base64");
    output = [];
    writeAll(1, `!["o","${chunk}"]\n`);
  }
}

function onOutput(bytes) {
  for (const b of bytes) output.push(b);
  if (output.length >= 512 || bytes.includes(10)) flushOutput();
  else if (!outputFlushQueued) {
    outputFlushQueued = true;
    setImmediate(() => {
      outputFlushQueued = false;
      flushOutput();
    });
  }
}

const replyBuffer = Buffer.alloc(1 << 16);
let pending = "";

function readReply() {
  for (;;) {
    const nl = pending.indexOf("\n");
    if (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      return line;
    }
    let n;
    try {
      n = fs.readSync(0, replyBuffer, 0, replyBuffer.length, null);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 1);
      continue;
    }
    if (n === 0) process.exit(0); // the host is gone: so is the board
    pending += replyBuffer.toString("latin1", 0, n);
  }
}

const inbox = new Map(); // link id -> [hex datagram, ...]
let mp = null;

const host = {
  call(request) {
    flushOutput();
    writeAll(1, "?" + request + "\n");
    let reply = readReply();
    if (reply.startsWith("K")) {
      mp._module._mp_sched_keyboard_interrupt();
      reply = reply.slice(1);
    }
    return reply;
  },
  notify(message) {
    flushOutput();
    writeAll(1, "!" + message + "\n");
  },
  recv(link) {
    const queue = inbox.get(link);
    return queue && queue.length ? queue.shift() : null;
  },
};

function pythonError(err) {
  host.notify(JSON.stringify(["crash", String(err.message ?? err)]));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { loadMicroPython } = await import(pathToFileURL(opts.vm).href);
  mp = await loadMicroPython({
    linebuffer: false,
    stdout: onOutput,
    stderr: onOutput,
  });
  mp.FS.mkdir("/rom");
  for (const dir of opts.roms) {
    for (const name of fs.readdirSync(dir)) {
      if (name.endsWith(".py")) {
        mp.FS.writeFile(`/rom/${name}`, fs.readFileSync(path.join(dir, name)));
      }
    }
  }
  mp.registerJsModule("simpul_host", host);
  mp.runPython("import sys\nsys.path.insert(0, \"/rom\")\nimport vmboard\nvmboard.power_on()");
  const bridge = mp.pyimport("vmboard");
  const dispatch = (event) => {
    try {
      switch (event[0]) {
        case "d": {
          if (!inbox.has(event[1])) inbox.set(event[1], []);
          const queue = inbox.get(event[1]);
          if (queue.length < 64) queue.push(event[2]);
          break;
        }
        case "m":
          bridge.start_main(event[1]);
          break;
        case "s":
          bridge.stop_main();
          break;
        case "h":
          bridge.reset_heap_peak();
          break;
        case "x":
          bridge.repl_exec(event[1], event[2]);
          break;
        default:
          throw new Error(`unknown event ${event[0]}`);
      }
    } catch (err) {
      pythonError(err);
    }
    flushOutput();
  };
  // Each in an entry of its own: what crossed into JS in one is released before the next.
  const probing = bridge.heap_probing();
  if (probing) bridge.heap_mark("bridge");
  bridge.run_boot_py(); // the boot part: the slot it chooses goes first on sys.path
  if (probing) {
    bridge.import_firmware();
    bridge.heap_mark("firmware_code");
    // Live heap between asyncio steps, where the firmware waits with its working set.
    setInterval(() => {
      try {
        bridge.probe_heap();
      } catch (err) {
        pythonError(err);
      }
    }, 2);
  }
  let carry = "";
  const events = fs.createReadStream(null, { fd: opts.events });
  events.on("data", (chunk) => {
    carry += chunk.toString("latin1");
    let nl;
    while ((nl = carry.indexOf("\n")) >= 0) {
      const line = carry.slice(0, nl);
      carry = carry.slice(nl + 1);
      if (line) dispatch(JSON.parse(line));
    }
  });
  events.on("end", () => process.exit(0));
  host.notify('["ready"]');
}

main().catch((err) => {
  process.stderr.write(`board.mjs: ${err.stack ?? err}\n`);
  process.exit(2);
});
