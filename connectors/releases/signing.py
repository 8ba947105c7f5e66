"""Ed25519 signatures for model releases: the trainer signs, the private cloud verifies.

    generate_keypair(Path("var/keys/trainer.key"), Path("var/keys/trainer.pub"))
    signature = sign(Path("var/keys/trainer.key"), release_sha256.encode())
    verify(Path("var/keys/trainer.pub"), release_sha256.encode(), signature)  # or SignatureError

Keys are PEM files (PKCS#8 private key, SubjectPublicKeyInfo public key), readable by ``openssl``.
The private key is written owner-only (0600) and refused when others can read it, as ssh does: a
signing key that leaked is no proof of origin.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streamrec.errors import ConfigError, ReleaseRefused


class SigningError(ConfigError):
    """A key cannot be made, read or used; the message says which file and what to do."""


class SignatureError(ReleaseRefused, SigningError):
    """A signature does not verify: the data changed or another key signed it."""


def generate_keypair(private_path: Path, public_path: Path, *, overwrite: bool = False) -> None:
    """Write a new Ed25519 key pair: the private key owner-only (0600), the public key 0644."""
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise SigningError(f"{path} exists; refusing to replace a key (pass overwrite=True "
                               "to rotate, then ship the new public key to the verifiers)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write(private_path, private_pem, 0o600)
    _write(public_path, public_pem, 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` from the first byte on (no window where others may read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed or the file may have existed
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def sign(private_path: Path, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``data`` with the private key at ``private_path``."""
    return _load_private(private_path).sign(data)


def verify(public_path: Path, data: bytes, signature: bytes) -> None:
    """Return if ``signature`` is the public key's signature of ``data``; raise SignatureError."""
    key = _load_public(public_path)
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            f"signature does not verify with {public_path}: the data was changed or signed by "
            "another key (was the trainer's key rotated without shipping its new public key?)"
        ) from None


def _load_private(path: Path) -> Ed25519PrivateKey:
    mode = _stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(f"{path} is readable by others (mode {stat.filemode(mode)}); "
                           f"run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    _stat(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise SigningError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise SigningError(f"key file {path} does not exist; make a pair with "
                           "connectors.releases.signing.generate_keypair") from None
