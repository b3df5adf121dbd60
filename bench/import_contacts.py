"""Benchmark: import N contacts across N/10 accounts from a generated messy CSV, then re-import it.

The file has 5% invalid rows (no usable e-mail or phone), 10% duplicate rows (same e-mail, other details),
phones in mixed national and international formats, and company websites written as URLs. The import runs
through the real command line (``pivotal import contacts``) into a throwaway database, so the figures
include process start, normalisation, COPY and the merge. Targets (issue 3): 1,000,000 rows in <= 90 s
with peak RSS <= 500 MB; the re-import in <= 90 s, changing nothing.

    .venv/bin/python bench/import_contacts.py [--rows 1000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))
FIRST = ["Ann", "Bob", "Cara", "Dan", "Eve", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Liam", "Mia", "Noor"]
LAST = ["Lee", "Stone", "Jones", "Brown", "Smith", "García", "Müller", "O'Brien", "Nguyen", "Kowalski"]
TITLES = ["CEO", "VP Sales", "Head of IT", "Procurement Manager", "CFO", "Marketing Director", ""]


def _phone(rng: random.Random, country: str) -> str:
    if country == "GB":
        local = f"20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        return rng.choice([f"+44 {local}", f"0{local}", f"+44 (0){local}", f"0044 {local.replace(' ', '')}"])
    area, mid, end = rng.choice([212, 415, 312, 617, 206]), rng.randint(200, 999), rng.randint(1000, 9999)
    return rng.choice([f"({area}) {mid}-{end}", f"+1 {area} {mid} {end}", f"{area}.{mid}.{end}", f"1{area}{mid}{end}"])


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    accounts = max(1, rows // 10)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Email,Phone Number,First Name,Last Name,Title,Company,Website,Country\r\n")
        for i in range(rows):
            # One row in ten repeats an earlier contact with other details.
            n = rng.randrange(i) if rng.random() < 0.10 and i > 0 else i
            account = n % accounts
            country = "GB" if account % 4 == 0 else "US"
            domain = f"company{account}.{'co.uk' if country == 'GB' else 'com'}"
            website = rng.choice([domain, f"https://www.{domain}/", f"http://{domain}/about", f"www.{domain}"])
            email = f"person{n}@{domain}"
            phone = _phone(rng, country)
            if rng.random() < 0.05:  # invalid: neither identity usable
                email, phone = f"person{n}-at-{domain}", "n/a"
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company = f'"Company {account}, Ltd"' if account % 3 == 0 else f"Company {account}"
            out.write(f"{email},{phone},{first},{last},{rng.choice(TITLES)},{company},{website},{country}\r\n")


def run_import(path: Path, env: dict[str, str], data_dir: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [PIVOTAL, "--data-dir", str(data_dir), "import", "contacts", str(path)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"import failed: {result.stderr[-2000:]}")
    return elapsed, result.stdout.strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PIVOTAL_TEST_DATABASE_URL"),
        help="server to create a throwaway database on (default: embedded PostgreSQL)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pivotal-bench-import-") as tmp:
        path = Path(tmp) / "contacts.csv"
        started = time.perf_counter()
        generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
        admin = None
        if args.database_url:
            name = f"pivotal_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(args.database_url)
            await admin.execute(f'CREATE DATABASE "{name}"')
            env["PIVOTAL_DATABASE_URL"] = urlunsplit(urlsplit(args.database_url)._replace(path="/" + name))
        try:
            first, summary = run_import(path, env, Path(tmp))
            print(f"import:    {first:6.1f} s  {args.rows / first:>9,.0f} rows/s   {summary}")
            second, summary = run_import(path, env, Path(tmp))
            print(f"re-import: {second:6.1f} s  {args.rows / second:>9,.0f} rows/s   {summary}")
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"peak RSS of the import process: {peak_mb:.0f} MB (target <= 500 MB); targets: <= 90 s each")
        finally:
            if admin is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
