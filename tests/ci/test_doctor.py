"""``er doctor``: every check reported, each missing piece with its fix."""

from __future__ import annotations

import er_cli.doctor as doctor
from er_cli import main


def _by_name(checks):
    return {c.name: c for c in checks}


def test_reports_every_check_and_exit_status(capsys):
    assert main(["doctor"]) == 0  # this venv has everything the base install needs
    out = capsys.readouterr().out
    for name in ("Python", "torch", "CUDA", "transformers", "TRL", "vLLM", "Docker engine", "sandbox images",
                 "shared data", "reward-service key"):
        assert name in out
    names = [c.name for c in doctor.run_checks()]
    assert names[:3] == ["Python", "torch", "CUDA"] and names[-1] == "reward-service key"


def test_missing_pieces_come_with_their_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ER_SHARED_DATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("ER_API_KEY", raising=False)
    key = tmp_path / "key"
    key.write_text("trainer:secret\n")
    key.chmod(0o644)  # world-readable: refused
    monkeypatch.setenv("ER_API_KEY_FILE", str(key))
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)  # no docker command
    checks = _by_name(doctor.run_checks())
    assert not checks["shared data"].ok and "ER_SHARED_DATA" in checks["shared data"].fix
    assert not checks["reward-service key"].ok and "chmod 600" in checks["reward-service key"].detail
    assert not checks["Docker engine"].ok and "setup_host.sh" in checks["Docker engine"].fix
    assert all(c.fix for c in checks.values() if not c.ok)
    assert all(not c.fix for c in checks.values() if c.ok)
    key.chmod(0o600)
    checks = _by_name(doctor.run_checks())
    assert checks["reward-service key"].ok and "secret" not in checks["reward-service key"].detail


def test_a_missing_required_piece_fails(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_python", lambda: doctor.Check("Python", False, "3.8", "use 3.10+", True))
    assert main(["doctor"]) == 1
    assert "MISSING" in capsys.readouterr().out
