"""A real IMAP server for the bounce-mailbox tests: Dovecot (Debian's `dovecot-imapd`),
started in the foreground with a configuration of its own on a free loopback port.

One static password for every user, Maildir storage in a temporary folder, plain IMAP
without TLS (loopback only). `scripts/services` installs Dovecot when it is missing.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.eventually import eventually

PASSWORD = "bounce-secret"
USER = "bounces"


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accounts() -> tuple[str, str, int, int]:
    """(internal user, login user, mail uid, mail gid): Dovecot refuses root for the
    login processes and the mail processes, so as root use its own system users."""
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid())
        return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid
    dovecot = pwd.getpwnam("dovecot")
    login = "dovenull" if _user_exists("dovenull") else "dovecot"
    return "dovecot", login, dovecot.pw_uid, dovecot.pw_gid


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class ImapServerHandle:
    """A running Dovecot; `url` is what BOUNCE_IMAP_URL would be."""

    def __init__(self, binary: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dispatcher-imap-"))
        self.root.chmod(0o711)  # the mail user may pass through to its own folder
        self.port = _free_port()
        internal, login, uid, gid = _accounts()
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, uid, gid)
        (self.root / "run").mkdir()
        self.log = self.root / "dovecot.log"
        conf = self.root / "dovecot.conf"
        conf.write_text(
            f"""base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = {uid}
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
        )
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def _wait_ready(self, timeout: float = 10.0) -> None:
        def answers() -> bool:  # polling a port that is not open yet: no other signal
            try:
                imaplib.IMAP4("127.0.0.1", self.port, timeout=2).logout()
            except OSError:
                return False
            return True

        try:
            eventually(answers, timeout=timeout, interval=0.05, what="dovecot answering")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"dovecot did not start: {self._log_tail()}") from None

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes) -> None:
        client = self.client()
        try:
            status, data = client.append("INBOX", None, None, raw)
            assert status == "OK", (data, self._log_tail())
        finally:
            client.logout()

    def flags(self) -> list[str]:
        """The flags of every message in INBOX, in order."""
        client = self.client()
        try:
            client.select("INBOX")
            _status, data = client.fetch("1:*", "(FLAGS)")
        finally:
            client.logout()
        return [item.decode() for item in data if isinstance(item, bytes)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
