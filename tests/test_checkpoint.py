"""Tests for ledger.checkpoint: C2SP signed-note checkpoints with Ed25519."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    load_or_create_signing_key,
    signer_for,
)

NAME = "gongkai.example/gz-fin/2025"
ROOT = hashlib.sha256(b"root").digest()
_URLSAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()
CP = Checkpoint(origin=NAME, size=42, root=ROOT)


def _raw_pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _spec_key_id(name: str, pub: bytes) -> bytes:
    """C2SP signed-note: SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + pub).digest()[:4]


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signer(key: Ed25519PrivateKey) -> NoteSigner:
    return NoteSigner(key, NAME)


@pytest.fixture(scope="module")
def verifier(signer: NoteSigner) -> NoteVerifier:
    return NoteVerifier.from_vkey(signer.vkey())


# --------------------------------------------------------------------------------------
# checkpoint body
# --------------------------------------------------------------------------------------


def test_body_format_and_parse_round_trip() -> None:
    assert CP.body() == f"{NAME}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert Checkpoint.parse_body(CP.body()) == CP
    empty = Checkpoint(NAME, 0, hashlib.sha256(b"").digest())
    assert Checkpoint.parse_body(empty.body()) == empty


def test_c2sp_example_checkpoint_body_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint.parse_body(text)
    assert (cp.origin, cp.size, len(cp.root)) == ("example.com/behind-the-sofa", 20852163, 32)
    assert cp.body() == text


@pytest.mark.parametrize(
    "text",
    [
        f"{NAME}\n42\n{base64.b64encode(ROOT).decode()}",  # no final newline
        f"{NAME}\n42\n",  # missing root
        f"{NAME}\n42\n{base64.b64encode(ROOT).decode()}\nextension\n",  # extension line
        f"\n42\n{base64.b64encode(ROOT).decode()}\n",  # empty origin
        f"{NAME}\n042\n{base64.b64encode(ROOT).decode()}\n",  # leading zero
        f"{NAME}\n-1\n{base64.b64encode(ROOT).decode()}\n",
        f"{NAME}\n+1\n{base64.b64encode(ROOT).decode()}\n",
        f"{NAME}\n\u0664\u0662\n{base64.b64encode(ROOT).decode()}\n",  # Arabic-Indic digits
        f"{NAME}\n{2**63}\n{base64.b64encode(ROOT).decode()}\n",
        f"{NAME}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31-byte root
        f"{NAME}\n42\n{base64.b64encode(ROOT).decode().rstrip('=')}\n",  # unpadded
        f"{NAME}\n42\n{_URLSAFE_ROOT}\n",  # URL-safe alphabet instead of standard
    ],
)
def test_parse_body_rejects_malformed(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse_body(text)


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        ("a\tb", 1, ROOT),
        (NAME, -1, ROOT),
        (NAME, True, ROOT),
        (NAME, 2**63, ROOT),
        (NAME, 1, ROOT[:16]),
        (NAME, 1, ROOT.hex()),
    ],
)
def test_checkpoint_constructor_validates(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(ValueError):
        Checkpoint(origin, size, root)


# --------------------------------------------------------------------------------------
# signing, vkey, verification
# --------------------------------------------------------------------------------------


def test_sign_verify_round_trip(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(CP)
    assert verifier.verify(note) == CP
    assert verifier.verify(note.encode()) == CP
    assert signer.verifier().verify(note) == CP


def test_signed_note_layout(signer: NoteSigner, key: Ed25519PrivateKey) -> None:
    note = signer.sign(CP)
    body, sigline = note.split("\n\n")
    assert body + "\n" == CP.body()
    assert sigline.endswith("\n") and sigline.count("\n") == 1
    assert sigline.startswith("\u2014 " + NAME + " ")
    raw = base64.b64decode(sigline[len("\u2014 " + NAME + " ") :].rstrip("\n"), validate=True)
    assert len(raw) == 4 + 64
    assert raw[:4] == _spec_key_id(NAME, _raw_pub(key)) == signer.key_id
    # independent check: the signature is plain Ed25519 over the UTF-8 body bytes
    Ed25519PublicKey.from_public_bytes(_raw_pub(key)).verify(raw[4:], CP.body().encode("utf-8"))


def test_vkey_format(signer: NoteSigner, key: Ed25519PrivateKey) -> None:
    vkey = signer.vkey()
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    assert name == NAME
    assert re.fullmatch(r"[0-9a-f]{8}", key_id_hex)
    raw = base64.b64decode(key_b64, validate=True)
    assert raw == b"\x01" + _raw_pub(key)
    assert bytes.fromhex(key_id_hex) == _spec_key_id(NAME, _raw_pub(key))
    parsed = NoteVerifier.from_vkey(vkey)
    assert (parsed.name, parsed.key_id, parsed.public_key) == (NAME, signer.key_id, raw[1:])
    assert parsed.vkey() == vkey
    assert NoteVerifier.from_vkey(vkey + "\n").vkey() == vkey  # trailing newline from a file


def test_unicode_origin_and_key_name() -> None:
    name = "gongkai.example/广州市财政局/2025"
    s = NoteSigner(Ed25519PrivateKey.generate(), name)
    cp = Checkpoint(name, 7, ROOT)
    assert NoteVerifier.from_vkey(s.vkey()).verify(s.sign(cp)) == cp


# Vector from golang.org/x/mod/sumdb/note (package documentation): the key
# "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz".
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG_PN = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_SIG_ENOCH = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGw"
    "nWLox33WWd1RvMc+QQ=\n"
)


def test_interop_with_go_note_package() -> None:
    s = NoteSigner(Ed25519PrivateKey.from_private_bytes(GO_SEED), "PeterNeumann")
    assert s.vkey() == GO_VKEY
    assert s.key_id.hex() == "c74f20a3"
    assert s.sign_text(GO_TEXT) == GO_TEXT + "\n" + GO_SIG_PN  # Ed25519 is deterministic
    v = NoteVerifier.from_vkey(GO_VKEY)
    assert v.verify_text(GO_TEXT + "\n" + GO_SIG_PN) == GO_TEXT
    # doubly-signed note from the same documentation: the unknown EnochRoot line is ignored
    assert v.verify_text(GO_TEXT + "\n" + GO_SIG_PN + GO_SIG_ENOCH) == GO_TEXT
    assert v.verify_text(GO_TEXT + "\n" + GO_SIG_ENOCH + GO_SIG_PN) == GO_TEXT
    with pytest.raises(NoteError, match="has 2 lines, expected 3"):
        v.verify(GO_TEXT + "\n" + GO_SIG_PN)  # verified, but not a checkpoint


def test_extra_unknown_signatures_are_ignored(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(CP)
    other = NoteSigner(Ed25519PrivateKey.generate(), "witness.example/w1")
    other_line = other.sign(CP).split("\n\n")[1]
    garbage = "\u2014 witness.example/w2 " + base64.b64encode(b"\x00" * 68).decode() + "\n"
    assert verifier.verify(note + other_line + garbage) == CP
    body = CP.body()
    assert verifier.verify(body + "\n" + other_line + note[len(body) + 1 :]) == CP


def test_tampered_body_is_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(CP)
    sig_block = note[len(CP.body()) :]
    for forged in (
        Checkpoint(CP.origin, CP.size + 1, CP.root),
        Checkpoint(CP.origin, CP.size, hashlib.sha256(b"other root").digest()),
        Checkpoint(CP.origin + "x", CP.size, CP.root),
    ):
        with pytest.raises(NoteError, match="invalid signature"):
            verifier.verify(forged.body() + sig_block)


def test_resigned_with_another_key_is_rejected(verifier: NoteVerifier) -> None:
    impostor = NoteSigner(Ed25519PrivateKey.generate(), NAME)  # same name, different key
    with pytest.raises(NoteError, match="no signature by"):
        verifier.verify(impostor.sign(CP))
    # impostor claiming our key id: the line is ours, so it must verify - and does not
    note = impostor.sign(CP)
    raw = base64.b64decode(note.rsplit(" ", 1)[1])
    claimed = base64.b64encode(verifier.key_id + raw[4:]).decode()
    with pytest.raises(NoteError, match="invalid signature"):
        verifier.verify(note.rsplit(" ", 1)[0] + " " + claimed + "\n")


def test_only_unknown_signatures_is_rejected(verifier: NoteVerifier) -> None:
    c2sp_example = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URY"
        "N7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    )
    with pytest.raises(NoteError, match=r"no signature by .*found: example\.com/behind-the-sofa"):
        verifier.verify(c2sp_example)


def test_truncated_signature_is_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(CP)
    head, b64 = note[:-1].rsplit(" ", 1)
    with pytest.raises(NoteError, match="base64"):
        verifier.verify(f"{head} {b64[:-2]}\n")  # broken padding
    shorter = base64.b64encode(base64.b64decode(b64)[:-3]).decode()
    with pytest.raises(NoteError, match="expected 64"):
        verifier.verify(f"{head} {shorter}\n")  # valid base64, signature cut short
    with pytest.raises(NoteError, match="too short"):
        verifier.verify(f"{head} {base64.b64encode(signer.key_id).decode()}\n")
    with pytest.raises(NoteError):
        verifier.verify(f"{head} \n")


def test_missing_blank_line_is_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(CP)
    with pytest.raises(NoteError, match="blank line"):
        verifier.verify(note.replace("\n\n", "\n"))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n[:-1],  # no final newline
        lambda n: n.split("\n\n")[0] + "\n\n",  # empty signature block
        lambda n: n.replace("\u2014 ", "- "),  # hyphen instead of em dash
        lambda n: n.replace("\u2014 ", "\u2014"),  # no space after the dash
        lambda n: n.replace("\u2014 ", "\u2014  "),  # empty key name
        lambda n: n.replace("\n42\n", "\n4\t2\n"),  # control character
        lambda n: n.replace("\n42\n", "\r\n42\n"),
        lambda n: n + "trailing junk\n",  # not a signature line
        lambda n: n.replace(NAME + " ", NAME + "  "),  # double space
    ],
)
def test_malformed_notes_are_rejected(
    signer: NoteSigner, verifier: NoteVerifier, mutate: Callable[[str], str]
) -> None:
    with pytest.raises(NoteError):
        verifier.verify(mutate(signer.sign(CP)))


def test_non_utf8_bytes_are_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        verifier.verify(b"\xff" + signer.sign(CP).encode())


def test_too_many_signature_lines(signer: NoteSigner, verifier: NoteVerifier) -> None:
    junk = "\u2014 other.example/k " + base64.b64encode(b"\x00" * 68).decode() + "\n"
    with pytest.raises(NoteError, match="more than"):
        verifier.verify(signer.sign(CP) + junk * 100)


def _vkey_with(name: str, key_bytes: bytes, key_id: bytes | None = None) -> str:
    """A vkey whose id is correctly computed over ``key_bytes`` unless ``key_id`` is given."""
    if key_id is None:
        key_id = hashlib.sha256(name.encode() + b"\n" + key_bytes).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(key_bytes).decode()}"


def test_from_vkey_rejects_bad_keys(signer: NoteSigner) -> None:
    pub = signer.public_key
    good = _vkey_with(NAME, b"\x01" + pub)
    assert NoteVerifier.from_vkey(good).key_id == signer.key_id
    bad = [
        ("", "key name"),
        (_vkey_with("a b", b"\x01" + pub), "space"),
        (_vkey_with(NAME, b"\x01" + pub, key_id=b"\x00\x00\x00\x00"), "does not match"),
        (_vkey_with(NAME, b"\x02" + pub), "algorithm 0x02"),
        (_vkey_with(NAME, b"\x01" + pub[:31]), "31 bytes"),
        (_vkey_with(NAME, b"\x01" + pub + b"\x00"), "33 bytes"),
        (_vkey_with(NAME, b""), "empty"),
        (f"{NAME}+{signer.key_id.hex()[:7]}+{base64.b64encode(b'x').decode()}", "8 hex"),
        (f"{NAME}+zzzzzzzz+AA==", "8 hex"),
        (f"{NAME}+{signer.key_id.hex()}+not*base64", "base64"),
        (f"{NAME}+{signer.key_id.hex()}", "base64|empty"),
    ]
    for vkey, why in bad:
        with pytest.raises(NoteError, match=why):
            NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\nb", "a\x01b"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        NoteSigner(Ed25519PrivateKey.generate(), name)


def test_sign_text_requires_final_newline(signer: NoteSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign_text("no newline")


_PROPERTY_KEY = Ed25519PrivateKey.generate()


@settings(max_examples=100, deadline=None)
@given(
    origin=st.text(
        st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\n"), min_size=1
    ),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_round_trip_property(origin: str, size: int, root: bytes) -> None:
    s = NoteSigner(_PROPERTY_KEY, "prop.example/log")
    cp = Checkpoint(origin, size, root)
    assert s.verifier().verify(s.sign(cp)) == cp


# --------------------------------------------------------------------------------------
# key management
# --------------------------------------------------------------------------------------


def test_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "keys" / "checkpoint.pem"
    key1 = load_or_create_signing_key(path)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8 PEM
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pem"]  # no temp left
    key2 = load_or_create_signing_key(path)
    assert _raw_pub(key1) == _raw_pub(key2)
    s = signer_for(path, NAME)
    assert s.public_key == _raw_pub(key1)
    assert NoteVerifier.from_vkey(s.vkey()).verify(s.sign(CP)) == CP


def test_key_file_created_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k.pem"
        load_or_create_signing_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race" / "k.pem"
    barrier = threading.Barrier(8)
    results: list[bytes] = []

    def worker() -> None:
        barrier.wait()
        results.append(_raw_pub(load_or_create_signing_key(path)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert results[0] == _raw_pub(load_or_create_signing_key(path))
    assert sorted(p.name for p in path.parent.iterdir()) == ["k.pem"]


def test_existing_non_ed25519_or_garbage_key_is_refused(tmp_path: Path) -> None:
    ec = tmp_path / "ec.pem"
    ec.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an Ed25519"):
        load_or_create_signing_key(ec)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"hello")
    with pytest.raises(ValueError, match="PEM"):
        load_or_create_signing_key(junk)
    assert junk.read_bytes() == b"hello"  # never overwritten
