"""SenML in CBOR (RFC 8428 §6, content-format 112) as the board sends its readings.

A *sample* is one measuring cycle: a time and several readings. The board encodes each sample
once, stores the bytes in its ring buffer, and at send time concatenates stored samples under
one array header::

    import senml
    part, n = senml.group("urn:dev:simpul:tkg-air-0001:", 1700000000250,
                          [("temp", "Cel", 21.5), ("rh", "%RH", 60)])
    payload = senml.pack([part], n)

Every sample's first record carries the base name and the base time (whole seconds, an
integer: an ESP32's 32-bit float cannot hold an epoch time); the milliseconds, when there are
any, go in each record's relative time. Records are maps with integer labels written in a
fixed order, so the same sample gives the same bytes on every interpreter.
"""

import cbor
from errors import SenmlError

# RFC 8428 Table 4: CBOR labels.
BVER = -1
BN = -2
BT = -3
BU = -4
BV = -5
BS = -6
N = 0
U = 1
V = 2
VS = 3
VB = 4
S = 5
T = 6
UT = 7
VD = 8

_NAMES = {
    BVER: "bver",
    BN: "bn",
    BT: "bt",
    BU: "bu",
    BV: "bv",
    BS: "bs",
    N: "n",
    U: "u",
    V: "v",
    VS: "vs",
    VB: "vb",
    S: "s",
    T: "t",
    UT: "ut",
    VD: "vd",
}


def _value_label(value):
    # bool before int: on CPython a bool is also an int.
    if value is True or value is False:
        return VB
    if isinstance(value, (int, float)):
        return V
    if isinstance(value, str):
        return VS
    if isinstance(value, (bytes, bytearray)):
        return VD
    raise SenmlError("no SenML value field for " + type(value).__name__)


def _record(pairs):
    out = bytearray(cbor.encode_head(5, len(pairs)))
    for label, value in pairs:
        out.extend(cbor.dumps(label))
        out.extend(cbor.dumps(value))
    return out


def group(base_name, t_ms, readings):
    """The records of one sample, without an array header: ``(bytes, number of records)``.

    ``t_ms`` is the Unix time of the sample in milliseconds (an int); ``readings`` is a list
    of ``(name, unit, value)``; a unit of None or "" is left out.
    """
    if not isinstance(t_ms, int) or t_ms < 0:
        raise SenmlError("sample time must be a non-negative int of milliseconds")
    bt = t_ms // 1000
    frac = t_ms % 1000
    out = bytearray()
    for i, reading in enumerate(readings):
        name, unit, value = reading
        pairs = []
        if i == 0:
            pairs.append((BN, base_name))
            pairs.append((BT, bt))
        pairs.append((N, name))
        if unit:
            pairs.append((U, unit))
        pairs.append((_value_label(value), value))
        if frac:
            pairs.append((T, frac / 1000))
        out.extend(_record(pairs))
    return bytes(out), len(readings)


def pack(parts, n_records):
    """A SenML pack: the array header for ``n_records`` then every part, in order."""
    out = bytearray(cbor.encode_head(4, n_records))
    for part in parts:
        out.extend(part)
    return bytes(out)


def decode(data):
    """The resolved records of a SenML-CBOR pack (RFC 8428 §4.6), as dicts keyed "n", "u",
    "v"/"vs"/"vb"/"vd", "s", "t", "ut": base values applied, base fields removed.

    ``t`` is base time plus relative time; for tools and tests, not for the board's own
    arithmetic on epoch times (32-bit floats).
    """
    pack_ = cbor.loads(data)
    if not isinstance(pack_, list):
        raise SenmlError("a SenML pack is an array")
    bn = ""
    bt = None  # no base time: records without t carry no time
    bu = None
    bv = 0
    bs = 0
    out = []
    for rec in pack_:
        if not isinstance(rec, dict):
            raise SenmlError("a SenML record is a map")
        for label in rec:
            if label not in _NAMES:
                raise SenmlError("unknown SenML label %r" % (label,))
        if BN in rec:
            bn = _typed(rec, BN, str)
        if BT in rec:
            bt = _number(rec, BT)
        if BU in rec:
            bu = _typed(rec, BU, str)
        if BV in rec:
            bv = _number(rec, BV)
        if BS in rec:
            bs = _number(rec, BS)
        name = bn + (_typed(rec, N, str) if N in rec else "")
        if not name:
            raise SenmlError("a SenML record needs a name")
        res = {"n": name}  # type: dict[str, object]
        unit = _typed(rec, U, str) if U in rec else bu
        if unit is not None:
            res["u"] = unit
        if V in rec:
            res["v"] = bv + _number(rec, V)
        elif BV in rec:
            res["v"] = bv
        if VS in rec:
            res["vs"] = _typed(rec, VS, str)
        if VB in rec:
            res["vb"] = _typed(rec, VB, bool)
        if VD in rec:
            res["vd"] = _typed(rec, VD, bytes)
        if S in rec:
            res["s"] = bs + _number(rec, S)
        elif BS in rec:
            res["s"] = bs
        if T in rec or bt is not None:
            res["t"] = (bt or 0) + (_number(rec, T) if T in rec else 0)
        if UT in rec:
            res["ut"] = _number(rec, UT)
        if not ("v" in res or "vs" in res or "vb" in res or "vd" in res or "s" in res):
            raise SenmlError("SenML record %r has no value" % name)
        out.append(res)
    return out


def _typed(rec, label, kind):
    value = rec[label]
    if not isinstance(value, kind):
        raise SenmlError("SenML %s must be %s" % (_NAMES[label], kind.__name__))
    return value


def _number(rec, label):
    value = rec[label]
    if value is True or value is False or not isinstance(value, (int, float)):
        raise SenmlError("SenML %s must be a number" % _NAMES[label])
    return value
