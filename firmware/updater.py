"""Download, check and install a release into the inactive slot, then arm its trial boot.

OTA-only (``hw.firmware_tools.UPDATE_ONLY``): the app imports it when the gateway says an
update is due (``{"ota": seq}`` on a 2.04), so its code is on the heap only then::

    u = updater.Updater(node)
    await u.run(seq)     # returns "installed", or raises ReleaseRefused / Coap* errors

The steps, each reported in health (``otastate``):

1. ``GET /ota/<seq>/manifest`` block by block (RFC 7959 Block2, answering the gateway's Echo
   challenge, RFC 9175 §2.4), at most ``manifest.MAX_MANIFEST_BYTES``; then the whole chain
   is checked (``manifest.verify_steps``, yielding to the sampler between slices) against the
   root key from the board's config, the anti-rollback counter, the hardware class, the boot
   part's version and the slot's size, before any file is fetched.
2. The inactive slot is made the release's: unless it already holds this very manifest
   (a download that a reset or a lost link interrupted), its files are removed and the
   manifest written first (``release.cose``, renamed into place).
3. Each file: kept if the slot already has it whole (its size and SHA-256 the manifest's);
   copied from the running slot if that one has it with the same digest; else fetched from
   where the slot's partial copy ends (the partial bytes are hashed again first), each
   block's ETag checked against the manifest's digest, the watchdog fed and buffered
   readings sent every few blocks. No byte past the declared size is requested or written:
   a gateway that sends more gets ``FileTooLarge``.
4. The slot is recorded whole (``otastate.slots``), the release ``pending``, then ``/slots.json``
   names it the trial: the next boot runs it once (``boot.py``), and the app confirms it only
   after its self-test (``app.Node``).

Progress survives a reset because it is the slot itself: the manifest and the bytes of each
file on flash. Nothing here changes the running slot, ``/slots.json`` before step 4, or the
anti-rollback counter.
"""

import binascii

import coap
import manifest
import slots
from errors import BadManifest, CoapRefused, FileMismatch, FileTooLarge

MANIFEST_NAME = "release.cose"
# Block2 size exponent: 2 ** (6 + 4) = 1024 bytes, what the gateway serves at most.
SZX = 6
BLOCK = 1 << (SZX + 4)
# Blocks fetched between two chances for the uploader to send what was sampled meanwhile.
BLOCKS_PER_TURN = 8
# The wall clock is trusted for certificate validity only once it is past this (2024-01-01):
# an ESP32 without time from the network counts from 2000.
TIME_KNOWN_AFTER_S = 1704067200


def other(slot):
    return "b" if slot == "a" else "a"


def unhex_key(text):
    try:
        key = binascii.unhexlify(text)
    except (ValueError, TypeError):
        return None
    return key if len(key) == 32 else None


class Updater:
    def __init__(self, node):
        self.node = node
        self.board = node.board
        self.flash = node.board.flash
        self.state = node.ota
        self.running = node.slot
        self.target = other(node.slot)
        self._echo = None
        self.fetched = 0  # bytes of files downloaded (not copied, not kept): for health

    # -- CoAP ------------------------------------------------------------------------------

    async def get_block(self, path, number):
        """One Block2 block of ``path``: (payload, more, response). Answers one Echo."""
        options = [(coap.BLOCK2, coap.uint_option(number << 4 | SZX))]
        for _ in range(2):
            opts = list(options)
            if self._echo is not None:
                opts.append((coap.ECHO, self._echo))
            response = await self.node.client.request(coap.GET, path, options=opts)
            echo = response.option(coap.ECHO)
            if response.code == coap.UNAUTHORIZED and echo is not None and echo != self._echo:
                self._echo = echo
                continue
            break
        if response.code != coap.CONTENT:
            raise CoapRefused(response.code, None)
        value = response.option(coap.BLOCK2)
        if value is None:
            got, more = 0, False
        else:
            value = coap.decode_uint(value)
            got, more = value >> 4, bool(value & 8)
            if value & 7 != SZX and more:
                raise CoapRefused(coap.BAD_OPTION, None)  # a block size we did not ask for
        if got != number:
            raise CoapRefused(coap.BAD_OPTION, None)
        return response.payload, more, response

    async def fetch_manifest(self, seq):
        data = bytearray()
        number = 0
        while True:
            payload, more, _ = await self.get_block("/ota/%d/manifest" % seq, number)
            data.extend(payload)
            if len(data) > manifest.MAX_MANIFEST_BYTES:
                raise BadManifest("manifest is longer than %d bytes" % manifest.MAX_MANIFEST_BYTES)
            if not more:
                return bytes(data)
            number += 1

    # -- the steps -------------------------------------------------------------------------

    async def run(self, seq):
        node = self.node
        state = self.state
        data = await self.fetch_manifest(seq)
        m = await self.verify(data)
        if m.seq != seq:
            raise BadManifest("the manifest at /ota/%d is release %d's" % (seq, m.seq))
        state.revocations = max(state.revocations, m.revocations_seq)
        node.progress("downloading", "release %d: 0/%d bytes" % (m.seq, m.total))
        self.prepare(data, m)
        old = self._running_files()
        done = 0
        for path, digest, size in m.files:
            await self.install_file(m, path, digest, size, old, done)
            done += size
            node.board.feed_watchdog()
        state.slots[self.target] = [m.seq, m.version]
        node.progress(
            "verified",
            "release %d: %d files, %d bytes, %d downloaded"
            % (m.seq, len(m.files), m.total, self.fetched),
        )
        await node.upload_pending()
        # Pending first: a cut between the two writes is taken for a failed trial (refused,
        # nothing booted), never for a trial that nobody remembers.
        state.pending = m.seq
        node.progress("installed", "release %d in slot %s" % (m.seq, self.target))
        slots.write(self.flash, {"active": self.running, "trial": self.target, "trial_boots": 0})
        return m

    async def verify(self, data):
        cfg = self.node.cfg
        key = unhex_key(cfg.get("root_key"))
        if key is None:
            raise BadManifest("the board has no root key in its config")
        now = self.board.time_ms() // 1000
        steps = manifest.verify_steps(
            data,
            key,
            self.state.seq,
            cfg["hw"],
            now=now if now > TIME_KNOWN_AFTER_S else None,
            revocations_seen=self.state.revocations,
            boot_version=slots.BOOT_VERSION,
            free_bytes=cfg["slot_bytes"],
        )
        for result in steps:
            if result is not None:
                return result
            self.board.feed_watchdog()
            await self.board.sleep_ms(0)
        raise BadManifest("manifest check gave no result")  # unreachable

    def prepare(self, data, m):
        """Make the inactive slot this release's: kept if it holds this manifest already
        (less anything it does not list, e.g. what a cut left of a copy), else emptied."""
        flash = self.flash
        target = self.target
        manifest_path = "/%s/%s" % (target, MANIFEST_NAME)
        if self._read(manifest_path) == data:
            listed = [f[0] for f in m.files]
            for name in flash.listdir("/" + target):
                if name != MANIFEST_NAME and name not in listed:
                    flash.remove("/%s/%s" % (target, name))
            return
        self.state.slots.pop(target, None)
        self.state.save()  # the slot is no release's from here until step 4
        flash.mkdir("/" + target)
        for name in flash.listdir("/" + target):
            flash.remove("/%s/%s" % (target, name))
        f = flash.open(manifest_path + ".tmp", "wb")
        try:
            f.write(data)
        finally:
            f.close()
        flash.rename(manifest_path + ".tmp", manifest_path)

    def _running_files(self):
        """{path: (sha256, size)} of the running slot's release; empty for the factory app.
        Its manifest was verified when it was installed; here it only says what to copy,
        and every copied byte is checked against the new manifest all the same."""
        data = self._read("/%s/%s" % (self.running, MANIFEST_NAME))
        if data is None:
            return {}
        try:
            return manifest.listed(data)
        except Exception:  # a damaged copy: download everything instead
            return {}

    async def install_file(self, m, path, digest, size, old, done):
        dest = "/%s/%s" % (self.target, path)
        check = manifest.FileCheck(m, path)
        have = self.flash.size(dest)
        if have > size:
            self.flash.remove(dest)
            have = -1
        if have > 0:
            # What a reset or a lost link left: whole blocks only, hashed again.
            have -= have % BLOCK
            await self._hash_prefix(dest, have, check)
            if have == size:
                try:
                    check.finish()
                    return
                except FileMismatch:  # damaged on flash: fetch it again
                    check = manifest.FileCheck(m, path)
                    have = 0
        have = max(have, 0)
        source = "/%s/%s" % (self.running, path)
        if old.get(path) == (digest, size) and self.flash.size(source) == size:
            await self._copy(source, dest, have, check)
        else:
            await self._download(m, path, dest, have, check, done)
        check.finish()

    async def _hash_prefix(self, path, length, check):
        """Feed the first ``length`` bytes of ``path`` to ``check``, and cut the file there
        (copied block by block: MicroPython's files cannot be truncated)."""
        whole = self.flash.size(path) == length
        src = self.flash.open(path, "rb")
        out = None if whole else self.flash.open(path + ".tmp", "wb")
        try:
            left = length
            while left:
                chunk = src.read(min(BLOCK, left))
                if not chunk:
                    break
                check.update(chunk)
                if out is not None:
                    out.write(chunk)
                left -= len(chunk)
                await self.board.sleep_ms(0)
        finally:
            src.close()
            if out is not None:
                out.close()
        if out is not None:
            self.flash.rename(path + ".tmp", path)

    async def _copy(self, source, dest, offset, check):
        src = self.flash.open(source, "rb")
        out = self.flash.open(dest, "ab" if offset else "wb")
        try:
            src.seek(offset)
            while True:
                chunk = src.read(BLOCK)
                if not chunk:
                    break
                check.update(chunk)
                out.write(chunk)
                self.board.feed_watchdog()
                await self.board.sleep_ms(0)
        finally:
            out.close()
            src.close()

    async def _download(self, m, path, dest, have, check, done):
        number = have // BLOCK
        etag = check.digest[:8]
        out = self.flash.open(dest, "ab" if have else "wb")
        try:
            while check.received < check.size or number == 0:
                payload, more, response = await self.get_block("/ota/%d/%s" % (m.seq, path), number)
                tag = response.option(coap.ETAG)
                if tag is not None and tag != etag:
                    raise FileMismatch("file %r: the gateway serves other content" % path)
                check.update(payload)  # past the declared size: FileTooLarge, nothing written
                if more and check.received >= check.size:
                    raise FileTooLarge(
                        "file %r: more than the %d bytes declared" % (path, check.size)
                    )
                out.write(payload)
                self.fetched += len(payload)
                number += 1
                if not more:
                    break
                if number % BLOCKS_PER_TURN == 0:
                    out.flush()
                    self.node.progress(
                        "downloading",
                        "release %d: %d/%d bytes" % (m.seq, done + check.received, m.total),
                        save=False,
                    )
                    self.board.feed_watchdog()
                    await self.node.upload_pending()
        finally:
            out.close()

    def _read(self, path):
        if self.flash.size(path) < 0:
            return None
        f = self.flash.open(path, "rb")
        try:
            return f.read()
        finally:
            f.close()
