// What a bare MicroPython VM (no board, no Python host) gets as the bridge's ``simpul_host``:
// the one call firmware code makes without a board, ``aes``, for the VM engine's cryptolib
// (hw/engines/mpy/rom/cryptolib.py). On a board, hw/engines/mpy/host.py answers it with
// Python's AES (hw/engines/micropython.py); here Node's does, for the firmware's tests
// (vm_test_runner.mjs) and heap measurements (vm_heap_slices.mjs).
//
//   mp.registerJsModule("simpul_host", { call: hostCall });

import crypto from "node:crypto";

// ["aes", key hex, mode (1 ECB, 2 CBC), encrypt, iv hex, data hex] -> [hex]; else {"e": 22}.
export function hostCall(request) {
  const [op, key, mode, encrypt, iv, data] = JSON.parse(request);
  const bits = key.length * 4;
  if (op !== "aes" || ![128, 192, 256].includes(bits) || ![1, 2].includes(mode)) {
    return JSON.stringify({ e: 22 });
  }
  const name = `aes-${bits}-${mode === 1 ? "ecb" : "cbc"}`;
  const args = [name, Buffer.from(key, "hex"), mode === 1 ? null : Buffer.from(iv, "hex")];
  const cipher = encrypt ? crypto.createCipheriv(...args) : crypto.createDecipheriv(...args);
  cipher.setAutoPadding(false);
  const out = Buffer.concat([cipher.update(Buffer.from(data, "hex")), cipher.final()]);
  return JSON.stringify([out.toString("hex")]);
}
