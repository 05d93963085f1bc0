"""Every user-facing string ships translated in Spanish, Portuguese and French.

The catalogs are compared with a template freshly extracted from the source (the same
`makemessages` a developer runs), so a new string without translations fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["es", "pt", "fr"]
SOURCES = ["community", "forums", "events", "notifications", "frontend", "platform"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("msgcmp"):
        pytest.fail(
            "gettext tools are missing: `make test` installs them (apt-get install gettext)"
        )
    tree = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        shutil.copytree(
            ROOT / name,
            tree / name,
            ignore=shutil.ignore_patterns(
                "__pycache__", "locale_vendor", "*.mo", "*.po", "migrations"
            ),
        )
    shutil.copy(ROOT / "manage.py", tree / "manage.py")
    (tree / "locale").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "--locale",
            "xx",
            "--keep-pot",
            "--no-location",
            "--ignore",
            "platform/minga/settings.py",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{tree}/platform:{tree}",
            "HOME": str(tree),
            "DJANGO_SETTINGS_MODULE": "minga.settings",
            "MINGA_TESTING": "1",
            "SQLITE_PATH": str(tree / "db.sqlite3"),
        },
    )
    assert result.returncode == 0, result.stderr
    return tree / "locale" / "django.pot"


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_translates_every_string_of_the_source(template: Path, language: str) -> None:
    catalog = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"

    result = subprocess.run(
        ["msgcmp", "--use-untranslated", str(catalog), str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    untranslated = subprocess.run(
        ["msgattrib", "--untranslated", "--no-obsolete", str(catalog)],
        capture_output=True,
        text=True,
        check=False,
    )
    fuzzy = subprocess.run(
        ["msgattrib", "--only-fuzzy", "--no-obsolete", str(catalog)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, f"msgids missing from {catalog}:\n{result.stderr[:3000]}"
    assert untranslated.stdout.count("msgid ") <= 1, (
        f"untranslated in {language}:\n{untranslated.stdout[:3000]}"
    )
    assert fuzzy.stdout.count("msgid ") <= 1, f"fuzzy in {language}:\n{fuzzy.stdout[:3000]}"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("es", "Mis grupos de trabajo"),
        ("pt", "Meus grupos de trabalho"),
        ("fr", "Mes groupes de travail"),
    ],
)
def test_compiled_catalog_is_active(language: str, expected: str) -> None:
    with translation.override(language):
        assert translation.gettext("My working groups") == expected


@pytest.mark.parametrize(("language", "expected"), [("pt", "Entrar"), ("es", "Iniciar sesión")])
def test_allauth_pages_speak_the_language(language: str, expected: str) -> None:
    # allauth ships pt as pt_BR: frontend/locale_vendor/pt makes Django's `pt` find it.
    with translation.override(language):
        assert translation.gettext("Sign In") == expected
