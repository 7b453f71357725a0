"""apps.accounts.ssh_keys.parse: which OpenSSH public keys are accepted, and their fingerprints."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    SSHCertificateBuilder,
    SSHCertificateType,
)

from apps.accounts.ssh_keys import InvalidSshKey, parse

# Generated with ssh-keygen; the fingerprints are what `ssh-keygen -lf` printed for them.
KNOWN = [
    (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfmuuh596rkMxsPakWr4bf2VKxim/tik8MYklxeq36U fixture@gpucloud",
        "ed25519",
        256,
        "SHA256:nnmTTP3xknCSRKeoIyw/tBBwt1PI+Q8ndM1hPlmU7EQ",
    ),
    (
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMvkYRHir7S06oaX"
        "yehZIzzq4bgKsdZYO6ADAbhhcrt9b1EFA6A1lP7NLAHiiObPYvRtSf/CyFTy3BlavZUWujk= fixture@gpucloud",
        "ecdsa-secp256r1",
        256,
        "SHA256:u5uezh1dE0L29RNSyaULjqfb2O/U38KhXcJ9tuVA9CI",
    ),
    (
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC8AI8gE854oCLp8oKN8vK+vjlr2KnNUoNm3FJmyXzusupSauVCKheoHYIs"
        "Eegy4v/x5/Fyl/kKnL+bMNUZvDr+9Kr7yw2dse4qXSnvaE78ILXSeTMOufYtlhQuPUVIr3Tww2BNXpLitfMecDuNd/9cjRIX/"
        "LBJEl3O6VpXq0yieD6sr1sQR7PC9cgs88u0rMtAAwjdRc3U2q35AKq3mBvwm37lnvQXoTJ8Jon5ASshIaUFpVgqHIIRc+8JoIR"
        "fRcQ0e9wIbBE2f3dcxg4krLBLg0M6xx0Gj76nneecWLukKPfg3k3gxDcd9Y5GtuiVczSa+GroTB/xtmDZ5YMamCGX"
        " fixture@gpucloud",
        "rsa",
        2048,
        "SHA256:lIdcPtUC35IU7BQjzcmMUAZZwObKPo0VyhKuoXIgRDQ",
    ),
]


def openssh_line(private_key, comment="ada@laptop") -> str:
    blob = private_key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{blob} {comment}"


def expected_fingerprint(line: str) -> str:
    """What `ssh-keygen -lf` prints: SHA-256 of the decoded key blob, base64 without padding."""
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


@pytest.mark.parametrize(("line", "key_type", "bits", "fingerprint"), KNOWN, ids=["ed25519", "ecdsa", "rsa"])
def test_fingerprints_match_ssh_keygen(line, key_type, bits, fingerprint):
    parsed = parse(line)

    assert (parsed.key_type, parsed.bits, parsed.fingerprint) == (key_type, bits, fingerprint)
    assert parsed.normalized == line


@pytest.mark.parametrize(
    ("make", "key_type", "bits"),
    [
        (ed25519.Ed25519PrivateKey.generate, "ed25519", 256),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-secp256r1", 256),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ecdsa-secp384r1", 384),
        (lambda: rsa.generate_private_key(65537, 2048), "rsa", 2048),
        (lambda: rsa.generate_private_key(65537, 4096), "rsa", 4096),
    ],
    ids=["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096"],
)
def test_accepted_key_types(make, key_type, bits):
    line = openssh_line(make())

    parsed = parse(line)

    assert (parsed.key_type, parsed.bits) == (key_type, bits)
    assert parsed.fingerprint == expected_fingerprint(line)
    assert parsed.normalized == line


def test_surrounding_whitespace_and_a_missing_comment_are_fine():
    line = openssh_line(ed25519.Ed25519PrivateKey.generate())
    bare = " ".join(line.split()[:2])

    assert parse(f"  {line}\n").normalized == line
    assert parse(bare).normalized == bare
    assert parse(bare).fingerprint == expected_fingerprint(line)


def test_a_comment_with_spaces_is_kept():
    line = openssh_line(ed25519.Ed25519PrivateKey.generate(), comment="Ada Lovelace (laptop)")

    assert parse(line).normalized == line


def test_rsa_1024_is_refused():
    with pytest.raises(InvalidSshKey, match="at least 2048 bits"):
        parse(openssh_line(rsa.generate_private_key(65537, 1024)))  # noqa: S505


def test_dsa_is_refused():
    # ssh-dss: p, q, g, y (built by hand: DSA support is leaving the crypto libraries).
    blob = ssh_string(b"ssh-dss") + b"".join(
        ssh_string(b"\x00" + bytes([0x80 | n]) + bytes(size - 1))
        for n, size in ((1, 128), (2, 20), (3, 128), (4, 128))
    )
    with pytest.raises(InvalidSshKey):
        parse(f"ssh-dss {base64.b64encode(blob).decode()} old@box")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello world",
        "ssh-ed25519",
        "ssh-ed25519 !!!not-base64!!!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfmuuh596rkMxsPakWr4bf2VKxim/tik8MYklxeq36",  # truncated
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfmuuh596rkMxsPakWr4bf2VKxim/tik8MYklxeq36Uéé",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfmuuh596rkMxsPakWr4bf2VKxim/tik8MYklxeq36U\x00 x",
        # the type named does not match the key inside
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJfmuuh596rkMxsPakWr4bf2VKxim/tik8MYklxeq36U",
        # a key type nobody supports
        "ssh-foo " + base64.b64encode(ssh_string(b"ssh-foo") + ssh_string(b"x" * 32)).decode(),
        "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIA==",
        "x" * 10000,
    ],
    ids=lambda text: repr(text[:30]),
)
def test_garbage_is_refused(text):
    with pytest.raises(InvalidSshKey):
        parse(text)


def test_a_certificate_is_refused():
    ca, user = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    certificate = (
        SSHCertificateBuilder()
        .public_key(user.public_key())
        .serial(1)
        .type(SSHCertificateType.USER)
        .valid_principals([b"ada"])
        .valid_after(0)
        .valid_before(2**64 - 1)
        .sign(ca)
    )

    with pytest.raises(InvalidSshKey, match="certificate"):
        parse(certificate.public_bytes().decode())


def test_a_pasted_private_key_is_refused_as_such():
    private = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
        .decode()
    )

    with pytest.raises(InvalidSshKey, match="private key"):
        parse(private)
    with pytest.raises(InvalidSshKey, match="private key"):
        parse(" ".join(private.split()))  # pasted onto one line


def test_two_keys_on_two_lines_are_refused():
    two = "\n".join(openssh_line(ed25519.Ed25519PrivateKey.generate()) for _ in range(2))

    with pytest.raises(InvalidSshKey, match="one public key"):
        parse(two)
    with pytest.raises(InvalidSshKey, match="one public key"):
        parse(two.replace("\n", "\r\n"))
