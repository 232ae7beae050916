"""Checkpoints as C2SP signed notes, signed with Ed25519 (SPEC §4).

Formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint):

* checkpoint body (the note *text*)::

      <origin>\\n<tree size, decimal, no leading zeros>\\n<base64(32-byte root)>\\n

* signed note: the text, a blank line, then one or more signature lines::

      — <key name> <base64(4-byte key id || 64-byte Ed25519 signature over the text)>\\n

  where the key id is ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``.

* verifier key (vkey): ``<key name>+<key id, 8 hex>+<base64(0x01 || public key)>``.

Verification follows golang.org/x/mod/sumdb/note ``Open``: the text is separated from the
signatures by the *last* blank line; signature lines from other keys (another name, or the
same name with another key id) are ignored; every line from our key must verify; a note
with no line from our key is rejected. Checkpoint extension lines are not produced and are
rejected when parsing. C2SP recommends that the key name equal the origin line; that is the
caller's choice and is not enforced here.

This is the only module that imports ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger.errors import Misconfigured

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "key_id_for",
    "load_or_create_signing_key",
    "signer_for",
]

ALG_ED25519 = 0x01
"""C2SP signed-note signature type identifier for Ed25519."""

ROOT_SIZE = 32  # RFC 9162 Merkle tree over SHA-256
MAX_TREE_SIZE = 2**63 - 1  # what Go's tlog (int64) can represent
MAX_SIGNATURES = 100  # C2SP: verifiers MUST accept at least 16; Go's note package allows 100
_SIG_PREFIX = "\u2014 "  # em dash, space
_ED25519_SIG_SIZE = 64
_ED25519_KEY_SIZE = 32

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}", re.ASCII)


class NoteError(ValueError):
    """A signed note or checkpoint is malformed, unsigned by the expected key, or forged."""


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def key_id_for(name: str, public_key: bytes) -> bytes:
    """C2SP key id: ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]`` (Ed25519)."""
    if len(public_key) != _ED25519_KEY_SIZE:
        raise ValueError(f"Ed25519 public key must be {_ED25519_KEY_SIZE} bytes")
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:4]


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid C2SP key name, or None if it is."""
    if not name:
        return "key name is empty"
    if "+" in name:
        return f"key name {name!r} contains '+'"
    if any(ch.isspace() for ch in name):
        return f"key name {name!r} contains a space"
    if _CONTROL.search(name) or "\n" in name:
        return f"key name {name!r} contains a control character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"key name {name!r} is not valid Unicode"
    return None


def _b64decode_strict(text: str, what: str) -> bytes:
    """Standard padded base64 (RFC 4648 §4), canonical encoding only."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _vkey(name: str, key_id: bytes, public_key: bytes) -> str:
    return f"{name}+{key_id.hex()}+{_b64(bytes([ALG_ED25519]) + public_key)}"


def _check_note_chars(text: str, what: str) -> None:
    """Signed notes MUST be valid UTF-8 without ASCII control characters other than \\n."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError(f"{what} is not valid UTF-8 (lone surrogate)") from exc
    m = _CONTROL.search(text)
    if m:
        raise NoteError(f"{what} contains control character U+{ord(m.group()):04X}")


# --------------------------------------------------------------------------------------
# checkpoint body
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: log origin, tree size and RFC 9162 root hash (32 bytes)."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise ValueError("checkpoint origin must be a non-empty string")
        if "\n" in self.origin:
            raise ValueError("checkpoint origin must be a single line")
        _check_note_chars(self.origin, "checkpoint origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"checkpoint size must be an int in [0, 2**63-1], got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_SIZE:
            raise ValueError(f"checkpoint root must be {ROOT_SIZE} bytes")

    def body(self) -> str:
        """The note text: origin, size and base64 root, each followed by a newline."""
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n"

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (the exact inverse of :meth:`body`)."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"checkpoint text has {len(lines)} lines, expected 3")
        if len(lines) > 3:
            raise NoteError("checkpoint extension lines are not supported")
        origin, size_text, root_text = lines
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        if not _TREE_SIZE.fullmatch(size_text):
            raise NoteError(f"checkpoint size {size_text!r} is not a canonical decimal")
        if len(size_text) > 19 or int(size_text) > MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {size_text} is too large")
        root = _b64decode_strict(root_text, "checkpoint root")
        if len(root) != ROOT_SIZE:
            raise NoteError(f"checkpoint root is {len(root)} bytes, expected {ROOT_SIZE}")
        try:
            return cls(origin=origin, size=int(size_text), root=root)
        except ValueError as exc:
            raise NoteError(str(exc)) from exc


# --------------------------------------------------------------------------------------
# signing and verification
# --------------------------------------------------------------------------------------


class NoteSigner:
    """Signs note texts (checkpoints) as C2SP signed notes with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        problem = _name_problem(name)
        if problem:
            raise ValueError(problem)
        self._key = private_key
        self._name = name
        self._public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._key_id = key_id_for(name, self._public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        """Raw 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def key_id(self) -> bytes:
        """4-byte C2SP key id."""
        return self._key_id

    def vkey(self) -> str:
        """Verifier key: ``<name>+<key id hex>+<base64(0x01 || public key)>``."""
        return _vkey(self._name, self._key_id, self._public_key)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self._name, self._public_key)

    def sign_text(self, text: str) -> str:
        """Sign an arbitrary note text (must end with a newline); return the signed note."""
        if not text.endswith("\n"):
            raise ValueError("note text must end with a newline")
        _check_note_chars(text, "note text")
        sig = self._key.sign(text.encode("utf-8"))
        return f"{text}\n{_SIG_PREFIX}{self._name} {_b64(self._key_id + sig)}\n"

    def sign(self, cp: Checkpoint) -> str:
        """Return the signed checkpoint note: body, blank line, signature line."""
        return self.sign_text(cp.body())


class NoteVerifier:
    """Verifies signed notes against one Ed25519 verifier key."""

    def __init__(self, name: str, public_key: bytes) -> None:
        problem = _name_problem(name)
        if problem:
            raise ValueError(problem)
        if len(public_key) != _ED25519_KEY_SIZE:
            raise ValueError(f"Ed25519 public key must be {_ED25519_KEY_SIZE} bytes")
        self._name = name
        self._public_key = bytes(public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self._public_key)
        self._key_id = key_id_for(name, self._public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a C2SP verifier key ``<name>+<8 hex key id>+<base64(0x01 || key)>``."""
        vkey = vkey.strip()
        name, _, rest = vkey.partition("+")
        hash_hex, _, key_b64 = rest.partition("+")
        problem = _name_problem(name)
        if problem:
            raise NoteError(f"malformed vkey: {problem}")
        if not _KEY_ID_HEX.fullmatch(hash_hex):
            raise NoteError("malformed vkey: key id must be 8 hex digits")
        key = _b64decode_strict(key_b64, "vkey public key")
        if not key:
            raise NoteError("malformed vkey: empty public key")
        if key[0] != ALG_ED25519:
            raise NoteError(f"unsupported vkey algorithm 0x{key[0]:02x} (only Ed25519, 0x01)")
        if len(key) != 1 + _ED25519_KEY_SIZE:
            raise NoteError(f"malformed vkey: Ed25519 key is {len(key) - 1} bytes, expected 32")
        expected = hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()[:4]
        if bytes.fromhex(hash_hex) != expected:
            raise NoteError(
                f"vkey key id {hash_hex.lower()} does not match its key (expected {expected.hex()})"
            )
        try:
            return cls(name, key[1:])
        except ValueError as exc:
            raise NoteError(f"malformed vkey: {exc}") from exc

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def vkey(self) -> str:
        return _vkey(self._name, self._key_id, self._public_key)

    def verify_text(self, note: str | bytes) -> str:
        """Verify a signed note and return its (signed) text, including the final newline."""
        if isinstance(note, bytes):
            try:
                note = note.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NoteError("note is not valid UTF-8") from exc
        _check_note_chars(note, "note")

        split = note.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no blank line separating the text from its signatures")
        text, sig_block = note[: split + 1], note[split + 2 :]
        if not sig_block or not sig_block.endswith("\n"):
            raise NoteError("note signature block is empty or does not end with a newline")
        lines = sig_block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")

        message = text.encode("utf-8")
        seen: list[str] = []
        verified = False
        for number, line in enumerate(lines, start=1):
            if not line.startswith(_SIG_PREFIX):
                raise NoteError(f"signature line {number} does not start with '— '")
            name, _, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
            problem = _name_problem(name)
            if problem:
                raise NoteError(f"signature line {number}: {problem}")
            if not sig_b64:
                raise NoteError(f"signature line {number} has no signature")
            try:
                raw = base64.b64decode(sig_b64.encode("ascii"), validate=True)
            except (UnicodeEncodeError, binascii.Error) as exc:
                raise NoteError(f"signature line {number} is not valid base64") from exc
            if len(raw) < 5:
                raise NoteError(f"signature line {number} is too short")
            key_id, sig = raw[:4], raw[4:]
            if name != self._name or key_id != self._key_id:
                seen.append(f"{name}+{key_id.hex()}")
                continue  # unknown key: C2SP says ignore
            if _b64(raw) != sig_b64:
                raise NoteError(f"signature line {number} is not canonical base64")
            if len(sig) != _ED25519_SIG_SIZE:
                raise NoteError(
                    f"signature by {self._name}+{self._key_id.hex()} is {len(sig)} bytes, "
                    f"expected {_ED25519_SIG_SIZE}"
                )
            try:
                self._key.verify(sig, message)
            except InvalidSignature:
                raise NoteError(f"invalid signature by {self._name}+{self._key_id.hex()}") from None
            verified = True
        if not verified:
            others = ", ".join(seen) or "none"
            raise NoteError(
                f"note has no signature by {self._name}+{self._key_id.hex()} (found: {others})"
            )
        return text

    def verify(self, note: str | bytes) -> Checkpoint:
        """Verify a signed checkpoint note and return the checkpoint it carries."""
        return Checkpoint.parse_body(self.verify_text(note))


# --------------------------------------------------------------------------------------
# key management
# --------------------------------------------------------------------------------------


def _load_signing_key(path: Path, data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the Ed25519 key at ``path`` (PEM, PKCS#8), creating it if it does not exist.

    A new key is written to a temporary file (mode 0600) in the same directory, fsynced,
    then moved into place without replacing an existing file (hard link, falling back to
    rename on filesystems without links), so a concurrent creator never gets its key
    silently overwritten: whoever lands first wins and both load that key. Missing parent
    directories are created (mode 0700).
    """
    path = Path(path)
    try:
        return _load_signing_key(path, path.read_bytes())
    except FileNotFoundError:
        pass

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if someone else created the key meanwhile
        except FileExistsError:
            pass
        except OSError:
            os.rename(tmp, path)  # no hard links here: plain atomic rename
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return _load_signing_key(path, path.read_bytes())


def signer_for(path: Path, key_name: str, *, create: bool = True) -> NoteSigner:
    """A :class:`NoteSigner` named ``key_name`` using the key stored at ``path``.

    ``create=False`` (every command but the server's start) refuses to make a key
    where there is none: a new key would sign the instance's logs with a key no
    verifier knows, and a checkpoint once signed cannot be taken back.
    """
    if not create and not Path(path).exists():
        raise Misconfigured(
            f"No signing key at {path}. The server makes the instance's key on its first "
            "start; point GONGKAI_SIGNING_KEY (or GONGKAI_DATA_DIR) at the instance's key.",
            path=str(path),
        )
    try:
        key = load_or_create_signing_key(path)
    except ValueError as exc:  # a file that is no Ed25519 key
        raise Misconfigured(str(exc), path=str(path)) from None
    return NoteSigner(key, key_name)
