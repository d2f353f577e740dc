"""Run a module or script with writes under some folders refused with EACCES (testing only).

    python tests/eacces.py READONLY_DIR[:READONLY_DIR...] -m virt_tf.train --flag=...
    python tests/eacces.py READONLY_DIR tools/reproduce.py --flag=...

As root, ``chmod 555`` does not stop a write and a read-only mount needs privileges a
test does not have, so "a folder that is not writable" is simulated here: every
Python-level call that would create, write, rename or remove a path under one of the
folders (``os.open`` with a write flag, ``open`` in a write mode, ``os.mkdir``,
``os.rename``, ``os.replace``, ``os.remove``, ``os.unlink``, ``os.rmdir``) raises
``PermissionError(EACCES)``, as the kernel would. The path checks of `virt_tf.cli.paths`
run in Python before TensorFlow is imported, so they see exactly this.
"""
import builtins
import errno
import io
import os
import runpy
import sys


def _install(readonly):
    roots = [os.path.realpath(r) for r in readonly]

    def refused(path):
        try:
            real = os.path.realpath(os.fsdecode(path))
        except TypeError:  # a file descriptor
            return False
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def deny(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and refused(file):
            deny(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and refused(path):
            deny(path)
        return real_os_open(path, flags, *args, **kwargs)

    def refuse_path(real):
        def guarded(path, *args, **kwargs):
            if refused(path):
                deny(path)
            return real(path, *args, **kwargs)
        return guarded

    def refuse_two(real):
        def guarded(src, dst, *args, **kwargs):
            for path in (src, dst):
                if refused(path):
                    deny(path)
            return real(src, dst, *args, **kwargs)
        return guarded

    builtins.open = io.open = guarded_open
    os.open = guarded_os_open
    for name in ("mkdir", "remove", "unlink", "rmdir"):
        setattr(os, name, refuse_path(getattr(os, name)))
    for name in ("rename", "replace"):
        setattr(os, name, refuse_two(getattr(os, name)))


def main():
    readonly, target, rest = sys.argv[1].split(os.pathsep), sys.argv[2], sys.argv[3:]
    _install(readonly)
    if target == "-m":
        module, args = rest[0], rest[1:]
        sys.argv = [module] + args
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target] + rest
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
