"""What the board keeps of its releases across resets and updates: ``/data/ota.json``.

It lives in ``/data``, outside both application slots, with the ring buffer and the boot
counter, so every update and every rollback leaves it in place::

    {
      "seq": 0,            # anti-rollback counter: the last release confirmed here; only grows
      "revocations": 0,    # the newest revocation list a verified manifest carried; only grows
      "refused": 0,        # the newest release that failed its trial here: never tried again
      "pending": null,     # the release armed for a trial boot, until confirmed or rolled back
      "slots": {"b": [7, "0.3.0"]},  # the release (seq, version) each slot holds, once whole
      "state": "idle",     # the last step, for health (gateway/ota/report.py lists them)
      "detail": null       # its progress or reason, at most 120 characters
    }

Written whole to a temporary file and renamed over the old one, so a power cut leaves the
old state or the new, never a torn one; a state that does not parse is a board that has
installed nothing yet (seq 0), which can only make it refuse less, never install an older
release than it confirmed if the file itself is lost, which a rename never does.
"""

import json

PATH = "/data/ota.json"
MAX_DETAIL = 120
# How the trial app says why it gave up, before it resets into the old slot.
FAILED = "self-test failed: "


class OtaState:
    def __init__(self, flash, path=PATH):
        self._flash = flash
        self._path = path
        self.seq = 0
        self.revocations = 0
        self.refused = 0
        self.pending = None
        self.slots = {}
        self.state = "idle"
        self.detail = None
        try:
            f = flash.open(path, "r")
            try:
                saved = json.loads(f.read())
            finally:
                f.close()
        except (OSError, ValueError):
            return
        if isinstance(saved, dict):
            for key in ("seq", "revocations", "refused"):
                if isinstance(saved.get(key), int) and saved[key] >= 0:
                    setattr(self, key, saved[key])
            if isinstance(saved.get("pending"), int):
                self.pending = saved["pending"]
            if isinstance(saved.get("slots"), dict):
                self.slots = saved["slots"]
            if isinstance(saved.get("state"), str):
                self.state = saved["state"]
                self.detail = saved.get("detail")

    def save(self):
        tmp = self._path + ".tmp"
        f = self._flash.open(tmp, "w")
        try:
            f.write(
                json.dumps(
                    {
                        "seq": self.seq,
                        "revocations": self.revocations,
                        "refused": self.refused,
                        "pending": self.pending,
                        "slots": self.slots,
                        "state": self.state,
                        "detail": self.detail,
                    }
                )
            )
        finally:
            f.close()
        self._flash.rename(tmp, self._path)

    def step(self, state, detail=None, save=True):
        """Record where the update stands (``detail`` cut to what health carries)."""
        self.state = state
        self.detail = None if detail is None else str(detail)[:MAX_DETAIL]
        if save:
            self.save()

    def slot_release(self, slot):
        """(seq, version) of the release ``slot`` holds whole, or (0, None): the factory app."""
        held = self.slots.get(slot)
        if isinstance(held, list) and len(held) == 2 and isinstance(held[0], int):
            return held[0], held[1]
        return 0, None

    def settle(self, slot, trial, reset_cause):
        """At start: what the last boot left. ``slot`` runs now; ``trial`` says it is on its
        trial boot. Returns True when the state changed (health should say so)."""
        running = self.slot_release(slot)[0]
        if trial:
            if self.state != "trial":
                self.step("trial", "self-test under way")
                return True
            # A reset during the trial boot leaves boot.py's count at one: the next boot
            # falls back. Nothing to do here.
            return False
        if self.pending is None:
            return False
        if running == self.pending:
            # Confirmed in slots.json, cut before this file said so: finish confirming.
            self.confirmed(running)
            return True
        if self.state == "trial" and self.detail and self.detail.startswith(FAILED):
            reason = self.detail
        elif reset_cause == "power_on":
            # The power went between arming the trial and confirming it: nothing says the
            # release is at fault. Not refused: the next hint arms it again from the slot.
            self.pending = None
            self.step("rolled_back", "power lost before the trial confirmed; to be tried again")
            return True
        elif self.state == "trial":
            reason = "trial boot ended before its self-test passed (reset: %s)" % reset_cause
        else:
            reason = "trial boot never started the release (reset: %s)" % reset_cause
        self.refused = max(self.refused, self.pending)
        self.pending = None
        self.step("rolled_back", reason)
        return True

    def confirmed(self, seq):
        self.seq = max(self.seq, seq)
        self.pending = None
        self.step("confirmed", None)

    def report(self, slot):
        """The ``ota`` field of health (gateway/ota/report.py)."""
        field = {"seq": self.slot_release(slot)[0], "state": self.state}
        if self.detail is not None:
            field["detail"] = self.detail
        return field
