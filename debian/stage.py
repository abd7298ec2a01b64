#!/usr/bin/python3
"""Put what the Python package's wheel does not carry into the Debian package tree.

Usage (debian/rules, after dh_auto_install): ``python3 debian/stage.py PKGDIR PLAN``

- Xen's side exactly as ``vif-qos install`` writes it (the same function, run into a
  scratch root, with the program ``/usr/bin/vif-qos`` written into the files):
  ``/etc/xen/scripts/vif-post.d/00-vif-qos.hook``, ``/etc/xen/scripts/vif-qos`` and
  the example policy as ``/etc/xen/vif-qos.conf`` (a conffile: every file under
  /etc is); the udev rules become ``debian/vif-qos.udev`` for dh_installudev; the
  rules for udev-driven hotplug (xend, run_hotplug_scripts=0) go to
  ``/usr/share/doc/vif-qos/examples`` for admins of such hosts to copy;
- every ``*.service``, ``*.socket`` and ``*.timer`` in ``systemd/`` into
  ``/lib/systemd/system`` (``@VIF_QOS@`` filled in as install fills it), and a line
  per unit in PLAN: the unit and the dh_installsystemd options it gets:
    * sockets and timers: enabled and started (restarted on upgrade);
    * a service that a socket or timer of the package starts (same name, or named
      by the trigger's ``Unit=``), and a ``Type=oneshot`` service: enabled when it
      has an [Install] section, but not started by the package (their trigger or
      boot runs them; an upgrade must not re-run a one-shot job on running guests);
    * any other service: enabled and started;
- the man pages, generated now from the sources (man/mkman.py), over the copies
  the wheel installed.
"""

import configparser
import glob
import os
import shutil
import sys
import tempfile

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SOURCE)

from vif_qos.cli import install as installer  # noqa: E402

PROGRAM = "/usr/bin/vif-qos"
UNIT_SUFFIXES = (".service", ".socket", ".timer")


def unit_options(path, units):
    """The dh_installsystemd options of the unit at ``path`` (see the module doc)."""
    name = os.path.basename(path)
    stem, suffix = os.path.splitext(name)
    if suffix != ".service":
        return ""
    for other in units:
        o_stem, o_suffix = os.path.splitext(os.path.basename(other))
        if o_suffix in (".socket", ".timer"):
            if o_stem == stem or _key(other, "Unit") == name:
                return "--no-start"
    if _key(path, "Type") == "oneshot":
        return "--no-start"
    return ""


def _key(path, key):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return None
    for section in ("Service", "Socket", "Timer"):
        if parser.has_option(section, key):
            return parser.get(section, key).strip()
    return None


def copy(src, dst, mode):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)


def main(pkg, plan):
    with tempfile.TemporaryDirectory() as stage:
        installer.install(stage, vif_qos=PROGRAM, udev_hotplug=True)
        for rel, mode in ((installer.HOOK_PATH, 0o755), (installer.WRAPPER_PATH, 0o755),
                          (installer.POLICY_PATH, 0o644)):
            copy(os.path.join(stage, rel), os.path.join(pkg, rel), mode)
        copy(os.path.join(stage, installer.UDEV_PATH),
             os.path.join(SOURCE, "debian", "vif-qos.udev"), 0o644)
        copy(os.path.join(stage, installer.UDEV_HOTPLUG_PATH),
             os.path.join(pkg, "usr/share/doc/vif-qos/examples",
                          os.path.basename(installer.UDEV_HOTPLUG_PATH)), 0o644)

    units = sorted(p for p in glob.glob(os.path.join(SOURCE, "systemd", "*"))
                   if p.endswith(UNIT_SUFFIXES))
    lines = []
    for path in units:
        with open(path, encoding="utf-8") as fh:
            text = installer._render(fh.read(), PROGRAM, "vif-bridge")
        dst = os.path.join(pkg, "lib/systemd/system", os.path.basename(path))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(dst, 0o644)
        lines.append(f"{os.path.basename(path)} {unit_options(path, units)}".rstrip())
    with open(plan, "w", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))

    sys.path.insert(0, os.path.join(SOURCE, "man"))
    import mkman  # noqa: E402

    for name, text in mkman.generate().items():
        section = name.rsplit(".", 1)[1]
        dst = os.path.join(pkg, "usr/share/man", f"man{section}", name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(dst, 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
