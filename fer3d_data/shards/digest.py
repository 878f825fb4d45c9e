"""SHA-256 digests of a shard's small datasets and attributes, stored at close, checked by verify.

Stage: HDF5 shard schema. The per-sample arrays and index columns carry Fletcher-32 per
chunk, but ``/config`` (a contiguous string), the ``/errors`` strings (global heap) and every
attribute carry none: one changed character there would pass unseen. :func:`seal` stores a
digest of each in the root attribute ``digests`` (JSON) when a writer closes;
:func:`digest_problems` recomputes them. docs/shards.md, "Checksums".
"""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np

DIGESTS_ATTR = "digests"
ATTRS_KEY = "attributes"  # the digest of every attribute of the file, itself excluded


def _small_datasets(f: h5py.File) -> list[str]:
    """Names of the datasets a digest covers: /config, /index/*, /errors/*."""
    names = ["config"]
    for group in ("index", "errors"):
        if isinstance(f.get(group), h5py.Group):
            names += [f"{group}/{k}" for k in sorted(f[group])]
    return [n for n in names if isinstance(f.get(n), h5py.Dataset)]


def _dataset_digest(ds: h5py.Dataset) -> str:
    """Digest of a dataset's dtype, shape and values (strings length-prefixed)."""
    h = hashlib.sha256(f"{ds.dtype.str}|{ds.shape}|".encode())
    data = ds[()]
    if ds.dtype.kind in "OS":
        for v in np.atleast_1d(np.asarray(data, dtype=object)).ravel():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            h.update(len(b).to_bytes(8, "little") + b)
    else:
        h.update(np.ascontiguousarray(data).tobytes())
    return h.hexdigest()


def _attrs_digest(f: h5py.File) -> str:
    """Digest of every attribute of the root and of every object, in name order."""
    h = hashlib.sha256()
    objects = [("/", f)]
    f.visititems(lambda name, obj: objects.append((name, obj)))
    for name, obj in sorted(objects, key=lambda o: o[0]):
        for key in sorted(obj.attrs):
            if name == "/" and key == DIGESTS_ATTR:
                continue
            value = np.asarray(obj.attrs[key])
            h.update(f"{name}|{key}|{value.dtype.str}|{value.shape}|".encode())
            h.update(repr(value.tolist()).encode("utf-8"))
    return h.hexdigest()


def compute(f: h5py.File, unreadable: dict[str, str] | None = None) -> dict[str, str]:
    """name -> SHA-256 hex of each small dataset, and ``attributes`` -> that of the attributes.

    A dataset HDF5 cannot read raises, or with ``unreadable`` given is left out and recorded
    there as name -> the error (verify names what is corrupt and checks the rest).
    """
    out = {}
    for name in _small_datasets(f):
        try:
            out[name] = _dataset_digest(f[name])
        except (OSError, RuntimeError, ValueError) as e:
            if unreadable is None:
                raise
            unreadable[name] = f"{type(e).__name__}: {e}"
    out[ATTRS_KEY] = _attrs_digest(f)
    return out


def seal(f: h5py.File) -> None:
    """Store the digests of ``f`` (open for writing) in its root attribute ``digests``."""
    f.attrs[DIGESTS_ATTR] = json.dumps(compute(f), sort_keys=True)


def unseal(f: h5py.File) -> None:
    """Drop the stored digests of a file about to change (a killed writer leaves none)."""
    if DIGESTS_ATTR in f.attrs:
        del f.attrs[DIGESTS_ATTR]


def digest_problems(f: h5py.File) -> list[str]:
    """Every mismatch between the stored and the recomputed digests ([] when they agree).

    A covered dataset that cannot be read is one problem naming it; an attribute or a group
    that cannot be read raises OSError/KeyError/ValueError from h5py, which the caller
    reports as corruption.
    """
    raw = f.attrs.get(DIGESTS_ATTR)
    if raw is None:
        return [("no stored digests (the writer did not close this file; a killed run's .tmp "
                 "has none until a rerun completes it)")]
    try:
        stored = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except ValueError as e:
        return [f"root attribute {DIGESTS_ATTR} is not valid JSON ({e})"]
    if not isinstance(stored, dict):
        return [f"root attribute {DIGESTS_ATTR} is not a JSON mapping"]
    unreadable: dict[str, str] = {}
    now = compute(f, unreadable)
    changed = [name for name in sorted(set(now) & set(stored)) if now[name] != stored[name]]
    problems = [f"/{name}: cannot be read (corrupt: {e})" for name, e in unreadable.items()]
    problems += [("attributes" if name == ATTRS_KEY else f"/{name}")
                 + ": SHA-256 digest differs from the one stored at close (changed bytes)"
                 for name in changed]
    problems += [f"/{name}: covered by a stored digest but missing"
                 for name in sorted(set(stored) - set(now) - set(unreadable))]
    problems += [f"/{name}: present but not covered by the stored digests"
                 for name in sorted(set(now) - set(stored))]
    return problems
