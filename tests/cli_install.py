"""Installation test: `meson install` into a temporary DESTDIR, then use the
installed tree as a user would.

* The tree: sparsify in BINDIR, sparsify-torch in LIBEXECDIR/sparsify,
  libsparsify shared (versioned soname, the sp_ API only) and static, every
  public header under INCLUDEDIR/sparsify/, sparsify.pc, a man page per
  command of `sparsify --help`, bash and zsh completions.
* The installed sparsify finds its helper relative to itself (no build
  folder beside it), also after the whole tree is moved elsewhere.
* A small C program (tests/install_probe.c) builds with
  `pkg-config --cflags --libs sparsify` (PKG_CONFIG_PATH into the DESTDIR),
  against the shared and against the static library, and runs.
* `man -l` renders every page without a warning, and each page names every
  option its command's --help lists.
* The bash completion completes a command, an option, an option's values,
  bundled recipe names and files; for every command it offers exactly the
  options of its --help. The zsh completion parses, and completes in a
  real zsh (zpty).

env: SPARSIFY (binary), SPARSIFY_SRC (source tree), SPARSIFY_BUILD (build
folder).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import SRC, check, run, summary  # noqa: E402

BUILD = os.environ.get("SPARSIFY_BUILD", os.path.join(SRC, "build"))


def sh(*args, env=None, timeout=300, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=timeout, **kw)


def commands():
    """The commands `sparsify --help` lists."""
    out = run("--help").stdout
    block = out.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [l.split()[0] for l in block.splitlines() if l.strip()]


def help_options(cmd):
    """The long and short options an entry line of `sparsify CMD --help` names."""
    out = run(cmd, "--help").stdout
    opts = set()
    for line in out.splitlines():
        m = re.match(r"^ {1,6}(-[^ ].*?)(?:  |$)", line)
        if m:
            for piece in m.group(1).split(", "):
                opts.add(piece.split(" ")[0])
    return opts


def options():
    p = sh("meson", "introspect", "--buildoptions", BUILD)
    return {o["name"]: o["value"] for o in json.loads(p.stdout)}


def tree_checks(root, o, cmds):
    def d(key, *rest):
        v = o[key]
        return os.path.join(root + (v if v.startswith("/") else os.path.join(o["prefix"], v)), *rest)
    bindir, libdir, incdir = d("bindir"), d("libdir"), d("includedir")
    exe = os.path.join(bindir, "sparsify")
    check(os.access(exe, os.X_OK), f"installed {exe}")
    helper = d("libexecdir", "sparsify", "sparsify-torch")
    check(os.access(helper, os.X_OK), f"installed the helper {helper}")
    check(not os.path.exists(os.path.join(bindir, "sparsify-torch")), "the helper is not in BINDIR")
    # libsparsify: .so -> .so.0 -> .so.0.x.y, and the .a
    so = os.path.join(libdir, "libsparsify.so")
    real = os.path.realpath(so)
    check(os.path.islink(so) and os.readlink(so) == "libsparsify.so.0"
          and re.fullmatch(r"libsparsify\.so\.0\.\d+\.\d+", os.path.basename(real)) is not None,
          f"libsparsify.so -> libsparsify.so.0 -> {os.path.basename(real)}")
    check(os.path.isfile(os.path.join(libdir, "libsparsify.a")), "installed libsparsify.a")
    dyn = sh("readelf", "-d", real).stdout
    check("Library soname: [libsparsify.so.0]" in dyn, "soname libsparsify.so.0")
    syms = [l.split()[-1] for l in sh("nm", "-D", "--defined-only", real).stdout.splitlines()]
    check(len(syms) > 100 and all(s.startswith("sp_") for s in syms),
          f"the shared library exports the sp_ API only ({len(syms)} symbols, "
          f"others: {[s for s in syms if not s.startswith('sp_')][:5]})")
    # headers: every public header of the tree, and version.h
    want = sorted(f for f in os.listdir(os.path.join(SRC, "include", "sparsify")) if f.endswith(".h"))
    got = sorted(os.listdir(os.path.join(incdir, "sparsify")))
    check(got == sorted(want + ["version.h"]), f"headers under include/sparsify: {got}")
    pc = os.path.join(libdir, "pkgconfig", "sparsify.pc")
    check(os.path.isfile(pc), "installed sparsify.pc")
    # man pages and completions
    man1 = d("mandir", "man1")
    pages = sorted(os.listdir(man1)) if os.path.isdir(man1) else []
    check(pages == sorted(["sparsify.1"] + [f"sparsify-{c}.1" for c in cmds]),
          f"a man page for sparsify and each command: {pages}")
    bash = d("datadir", "bash-completion", "completions", "sparsify")
    zsh = d("datadir", "zsh", "site-functions", "_sparsify")
    check(os.path.isfile(bash) and os.path.isfile(zsh), "installed the bash and zsh completions")
    return exe, helper, libdir, incdir, man1, bash, zsh


def helper_checks(exe, helper, tmp):
    p = sh(exe, "--version", "--json")
    v = json.loads(p.stdout) if p.returncode == 0 else {}
    check(p.returncode == 0 and v.get("features", {}).get("torch_helper") == os.path.realpath(helper),
          f"installed sparsify finds its helper in LIBEXECDIR ({v.get('features', {}).get('torch_helper')})")
    p = sh(exe, "run", "--help")
    check(p.returncode == 0 and p.stdout.startswith("usage: sparsify run"), "installed 'sparsify run --help' runs the helper")
    # moved elsewhere: still found, relative to the binary
    moved = os.path.join(tmp, "moved")
    shutil.copytree(os.path.join(tmp, "dest"), moved, symlinks=True)
    rel = os.path.relpath(exe, os.path.join(tmp, "dest"))
    p = sh(os.path.join(moved, rel), "--version", "--json")
    where = json.loads(p.stdout)["features"]["torch_helper"] if p.returncode == 0 else None
    check(where is not None and where.startswith(moved + "/"), f"a moved tree finds its own helper ({where})")
    # the helper missing: one error line naming where it looked
    os.remove(os.path.join(moved, os.path.relpath(helper, os.path.join(tmp, "dest"))))
    p = sh(os.path.join(moved, rel), "finetune", "x.ts")
    lines = p.stderr.splitlines()
    check(p.returncode == 1 and len(lines) == 1 and "cannot find sparsify-torch" in lines[0]
          and "libexec" in lines[0], f"helper missing: one error line ({p.stderr.strip()!r})")


def pkgconfig_checks(tmp, root, o, libdir, incdir):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    pkg = ["pkg-config", "--define-variable=prefix=" + root + o["prefix"]]
    cflags = sh(*pkg, "--cflags", "sparsify", env=env)
    libs = sh(*pkg, "--libs", "sparsify", env=env)
    check(cflags.returncode == 0 and "-I" + incdir in cflags.stdout.split(),
          f"pkg-config --cflags sparsify points into the DESTDIR ({cflags.stdout.strip()})")
    check(libs.returncode == 0 and "-lsparsify" in libs.stdout.split(), f"pkg-config --libs sparsify ({libs.stdout.strip()})")
    probe = os.path.join(SRC, "tests", "install_probe.c")
    # a sanitizer build installs an instrumented library: its users link the runtime
    san = [] if o.get("b_sanitize", "none") == "none" else ["-fsanitize=" + o["b_sanitize"]]
    shared = os.path.join(tmp, "probe_shared")
    p = sh("cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *san, probe, "-o", shared,
           *cflags.stdout.split(), *libs.stdout.split())
    check(p.returncode == 0, f"the probe builds against the shared library ({p.stderr[-500:]})")
    p = sh(shared, env=dict(os.environ, LD_LIBRARY_PATH=libdir))
    check(p.returncode == 0 and "2:4 pruned 16 of 32 weights to zero" in p.stdout and "conforms" in p.stdout,
          f"the shared probe runs ({p.stdout.strip()!r} {p.stderr.strip()!r})")
    ldd = sh("ldd", shared, env=dict(os.environ, LD_LIBRARY_PATH=libdir)).stdout
    check(f"libsparsify.so.0 => {libdir}/libsparsify.so.0" in ldd, "the shared probe loads the installed libsparsify.so.0")
    # static: the same flags with --static, the archive instead of the .so
    slibs = sh(*pkg, "--static", "--libs", "sparsify", env=env).stdout.split()
    slibs = ["-l:libsparsify.a" if f == "-lsparsify" else f for f in slibs]
    static = os.path.join(tmp, "probe_static")
    p = sh("cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *san, probe, "-o", static,
           *cflags.stdout.split(), *slibs)
    check(p.returncode == 0, f"the probe builds against the static library ({p.stderr[-500:]})")
    p = sh(static)
    check(p.returncode == 0 and "conforms" in p.stdout, f"the static probe runs without the .so ({p.stderr.strip()!r})")
    check("libsparsify" not in sh("ldd", static).stdout, "the static probe does not load libsparsify.so")


def man_checks(man1, cmds):
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    for page in sorted(os.listdir(man1)):
        path = os.path.join(man1, page)
        p = sh("man", "--warnings", "-P", "cat", "-l", path, env=env)
        text = re.sub(r".\x08", "", p.stdout)
        check(p.returncode == 0 and "NAME" in text and "SYNOPSIS" in text and not p.stderr.strip(),
              f"man -l {page}: renders without warnings ({p.stderr.strip()[:300]!r})")
        cmd = page[len("sparsify-"):-2] if page.startswith("sparsify-") else None
        if cmd:
            want = help_options(cmd)
        else:
            check(all(f"sparsify-{c}(1)" in text for c in cmds), "sparsify(1) points to every command's page")
            want = {"--version", "--json", "--help", "-h"}
        missing = sorted(o for o in want if o not in text)
        check(not missing, f"{page} names every option of its --help (missing {missing})")
        if cmd:
            summary_line = [l for l in run("--help").stdout.splitlines() if l.startswith(f"  {cmd} ")][0]
            check(" ".join(summary_line.split()[1:]) in " ".join(text.split()),
                  f"{page}: NAME holds the summary of the command table")


BASH_COMPLETE = r'''
source "$1"
comp() {
  COMP_LINE=$1; COMP_POINT=${#COMP_LINE}
  read -r -a COMP_WORDS <<<"$COMP_LINE"
  [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  _sparsify sparsify "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}
comp "$2"
'''


def bash_complete(script, line, cwd):
    p = sh("bash", "-c", BASH_COMPLETE, "bash", script, line, cwd=cwd)
    return p.stdout.split(), p


def bash_checks(script, tmp, cmds):
    files = os.path.join(tmp, "files")
    os.makedirs(files)
    for f in ("model.pt", "model.safetensors", "recipe.json"):
        open(os.path.join(files, f), "w").close()
    recipes = [l.split()[0] for l in run("recipe", "list").stdout.splitlines() if l.strip()]
    cases = [
        ("sparsify pr", ["prune"]),
        ("sparsify ", sorted(cmds + ["help"])),
        ("sparsify prune --spa", ["--sparsity"]),
        ("sparsify check --scope ", ["global", "layer"]),
        ("sparsify export --format ", ["compressed-tensors", "safetensors", "spz"]),
        ("sparsify prune --recipe unstructured-9", ["unstructured-90", "unstructured-95"]),
        ("sparsify recipe ", ["convert", "list", "show", "validate"]),
        ("sparsify recipe show ", sorted(recipes)),
        ("sparsify prune mod", ["model.pt", "model.safetensors"]),
        ("sparsify prune model.pt -o ", sorted(["model.pt", "model.safetensors", "recipe.json"])),
        ("sparsify prune --recipe rec", ["recipe.json"]),
        ("sparsify prune model.pt --sparsity ", []),
        ("sparsify help ex", ["export"]),
        ("sparsify --v", ["--version"]),
    ]
    if "2:4" in recipes:  # a name with a colon, which bash splits words at
        cases.append(("sparsify prune --recipe 2:", ["4"]))
    for line, want in cases:
        got, p = bash_complete(script, line, files)
        check(sorted(got) == sorted(want), f"bash: {line!r} completes to {want} (got {got}; {p.stderr.strip()[:200]})")
    for c in cmds:
        got, _ = bash_complete(script, f"sparsify {c} -", files)
        want = sorted(help_options(c))
        check(sorted(got) == want, f"bash: 'sparsify {c} -' offers exactly the options of its --help "
                                   f"(missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))})")


ZSH_COMPLETE = r'''
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='%% '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; unsetopt beep; zstyle ':completion:*' menu no; zstyle ':completion:*' list-prompt ''; LISTMAX=0"
shift
for line want in "$@"; do
  zpty -w -n z "$line"$'\t'
  zpty -r z out "*$want*" && print -r -- "ok $line"
  zpty -w -n z $'\x15'  # ^U: kill the line (an interrupt would drop typed-ahead input)
done
zpty -d z
'''


def zsh_checks(script, tmp):
    zsh = shutil.which("zsh")
    check(zsh is not None, "zsh is installed (scripts/bootstrap.sh installs it)")
    if not zsh:
        return
    p = sh(zsh, "-n", script)
    check(p.returncode == 0, f"the zsh completion parses ({p.stderr.strip()[:300]})")
    fdir = os.path.join(tmp, "zfunc")
    os.makedirs(fdir)
    shutil.copy(script, fdir)
    # what appears on the screen once TAB completed the line (zle draws
    # the space it adds in its own attributes, so the words alone)
    cases = [("sparsify pru", "prune"), ("sparsify prune --spars", "--sparsity"),
             ("sparsify check --scope ", "global"), ("sparsify prune --recipe movem", "movement-90"),
             ("sparsify recipe val", "validate")]
    args = [a for c in cases for a in c]
    try:
        p = sh(zsh, "-f", "-c", ZSH_COMPLETE, "zsh", fdir, *args, timeout=60, cwd=tmp)
        out = p.stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
    for line, want in cases:
        check(f"ok {line}" in out, f"zsh: {line!r} completes to {want!r}")


def version_checks():
    """--version: the project version, the git revision it was built from,
    the ISAs this CPU runs as /proc/cpuinfo tells them."""
    project = json.loads(sh("meson", "introspect", "--projectinfo", BUILD).stdout)["version"]
    p = run("--version", "--json")
    v = json.loads(p.stdout) if p.returncode == 0 else {}
    check(v.get("version") == project, f"--version: version {v.get('version')} (project {project})")
    git = sh("git", "-C", SRC, "describe", "--always", "--abbrev=12")
    if git.returncode == 0:
        check(v.get("git", "").split("-dirty")[0] == git.stdout.strip(),
              f"--version: git revision {v.get('git')} (checkout {git.stdout.strip()})")
    text = run("--version").stdout.splitlines()
    check(bool(text) and text[0] == f"sparsify {project} (git {v.get('git')})", f"--version first line: {text[:1]}")
    f = v.get("features", {})
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    runs = f.get("isa", {}).get("runs", [])
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    want = ["scalar"] + (["avx2"] if {"avx2", "fma"} <= flags else []) + \
        (["avx512"] if avx512 else []) + \
        (["avx512bf16"] if avx512 and {"avx512_bf16", "avx512vbmi"} <= flags else [])
    check(runs == want, f"--version: ISAs this CPU runs {runs} (cpuinfo: {want})")
    check(f.get("isa", {}).get("best") == want[-1] and "scalar" in f.get("isa", {}).get("built", []),
          "--version: the best ISA, the ISAs built")
    if f.get("libtorch"):
        check(bool(f.get("libtorch_version")) and isinstance(f.get("cuda"), bool),
              f"--version: libtorch {f.get('libtorch_version')}, cuda {f.get('cuda')} (asked of sparsify-torch)")
        check(any(l.startswith("libtorch  " + f["libtorch_version"]) for l in text), "--version text: libtorch line")
    p = run("--version", "--yaml")
    check(p.returncode == 2 and len(p.stderr.splitlines()) == 1, "--version with another argument: exit 2, one line")


def main():
    cmds = commands()
    check(len(cmds) >= 9 and "prune" in cmds, f"commands of 'sparsify --help': {cmds}")
    o = options()
    version_checks()
    with tempfile.TemporaryDirectory(prefix="cli_install_") as tmp:
        root = os.path.join(tmp, "dest")
        p = sh("meson", "install", "-C", BUILD, "--destdir", root, "--no-rebuild", "--quiet")
        check(p.returncode == 0, f"meson install --destdir ({p.stdout[-500:]} {p.stderr[-1000:]})")
        if p.returncode != 0:
            return summary()
        exe, helper, libdir, incdir, man1, bash, zsh = tree_checks(root, o, cmds)
        helper_checks(exe, helper, tmp)
        pkgconfig_checks(tmp, root, o, libdir, incdir)
        man_checks(man1, cmds)
        bash_checks(bash, tmp, cmds)
        zsh_checks(zsh, tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
