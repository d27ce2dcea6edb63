"""Build the gateway package and its Cython hot-path modules (one Extension per .pyx)."""

import glob
import os

from setuptools import Extension, find_packages, setup

try:
    from Cython.Build import cythonize
except ImportError:  # the pure-Python twins still work
    cythonize = None


# Modules bound to a system library: (the library to link, its header, the Debian package).
LIBRARIES = {"h2session": ("nghttp2", "nghttp2/nghttp2.h", "libnghttp2-dev")}


def _check_header(module, header, package):
    """Stop with one sentence when a library's headers are missing (not a compiler traceback)."""
    if not any(os.path.exists(os.path.join(d, header))
               for d in ("/usr/include", "/usr/local/include")):
        raise SystemExit(f"_fastpath.{module} needs {header}: install it with "
                         f"`apt-get install {package}` (scripts/ensure-system-packages does), "
                         "or build without extensions (GATEWAY_NO_EXTENSIONS=1)")


def _extension(path):
    name = os.path.basename(path)[:-4]
    libraries = []
    if name in LIBRARIES:
        library, header, package = LIBRARIES[name]
        _check_header(name, header, package)
        libraries.append(library)
    return Extension(f"_fastpath.{name}", [path], extra_compile_args=["-O2"],
                     libraries=libraries)


def fastpath_extensions():
    if cythonize is None or os.environ.get("GATEWAY_NO_EXTENSIONS") == "1":
        return []
    modules = [_extension(path) for path in sorted(glob.glob("_fastpath/*.pyx"))]
    return cythonize(modules, language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "cdivision": True})


setup(
    name="gateway",
    version="0.1.0",
    description="An nginx-like reverse proxy on uvloop that also dispatches to QEMU unikernel workers",
    packages=find_packages(include=["gateway", "gateway.*", "_fastpath", "bench"]),
    package_data={"_fastpath": ["*.pyx", "*.pxd", "*.pyi"], "gateway": ["default/*", "observe/status_page.html"]},
    ext_modules=fastpath_extensions(),
    python_requires=">=3.11",
    install_requires=["uvloop>=0.19", "aiohttp>=3.9", "mmh3>=4", "orjson>=3.9", "h2>=4.1",
                      "dnspython>=2.4"],
    extras_require={"test": ["pytest>=8", "pytest-asyncio>=0.23", "Cython>=3.0"]},
    entry_points={"console_scripts": ["gateway = gateway.cli:main"]},
)
