"""make install: headers, libraries, vie.pc and the binary, usable by a C program."""
import os
import shutil
import subprocess
import tempfile
import unittest

VIE_BIN = os.environ.get("VIE_BIN", os.path.join(os.path.dirname(__file__), "../../build/vie"))
BUILD_DIR = os.path.dirname(os.path.abspath(VIE_BIN))
SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


@unittest.skipIf(os.environ.get("VIE_SANITIZED"), "a sanitized library needs its runtime to link")
class InstallTest(unittest.TestCase):
    def setUp(self):
        self.prefix = tempfile.mkdtemp(prefix="vie-install-")
        self.addCleanup(shutil.rmtree, self.prefix, True)
        subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", self.prefix],
                       check=True, capture_output=True, timeout=60)

    def pkg_config(self, *args):
        env = dict(os.environ)
        libdirs = [d for d in os.listdir(self.prefix) if d.startswith("lib")]
        env["PKG_CONFIG_PATH"] = ":".join(
            os.path.join(self.prefix, d, "pkgconfig") for d in libdirs)
        out = subprocess.run(["pkg-config", *args, "vie"], env=env, check=True,
                             capture_output=True, text=True, timeout=30)
        return out.stdout.split()

    def test_files_are_installed(self):
        self.assertTrue(os.path.isfile(os.path.join(self.prefix, "include/vie/vie.h")))
        self.assertTrue(os.access(os.path.join(self.prefix, "bin/vie"), os.X_OK))
        out = subprocess.run([os.path.join(self.prefix, "bin/vie"), "--version"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        self.assertTrue(out.stdout.startswith("vie "))

    def test_a_program_builds_against_the_installed_library(self):
        exe = os.path.join(self.prefix, "hello")
        cflags = self.pkg_config("--cflags")
        libs = self.pkg_config("--libs")
        subprocess.run(["cc", "-std=c17", "-Wall", "-Werror", "-Wno-unused-parameter",
                        os.path.join(SOURCE_DIR, "examples/hello.c"), *cflags, *libs,
                        "-o", exe], check=True, capture_output=True, timeout=60)
        libdir = [f[2:] for f in libs if f.startswith("-L")][0]
        env = dict(os.environ, LD_LIBRARY_PATH=libdir)
        ldd = subprocess.run(["ldd", exe], env=env, capture_output=True, text=True, timeout=10)
        self.assertIn(os.path.realpath(libdir), os.path.realpath(
            [l for l in ldd.stdout.splitlines() if "libvie" in l][0].split("=>")[1].split()[0]))


if __name__ == "__main__":
    unittest.main()
