"""What a verification found: each failed check names the offending event or row."""

from __future__ import annotations

import msgspec


class Finding(msgspec.Struct, frozen=True):
    check: str
    detail: str
    global_position: int | None = None
    stream_id: str | None = None


class Report(msgspec.Struct):
    events: int = 0
    streams: int = 0
    seals: int = 0
    checks: list[str] = msgspec.field(default_factory=list)
    findings: list[Finding] = msgspec.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, finding: Finding) -> None:
        if len(self.findings) < 1000:  # bounded: the first offenders are what an auditor needs
            self.findings.append(finding)
