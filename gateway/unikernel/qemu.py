"""QEMU for unikernel workers: find QEMU and images, choose the accelerator, build the command line."""

import os
import shutil
from pathlib import Path

from gateway.errors import ImageNotFound, LaunchFailed, QemuNotFound

QEMU_BINARY = "qemu-system-x86_64"
IMAGE_DIR = Path(__file__).resolve().parents[2] / "unikernels" / "build"
# TCG's translation cache defaults to far more than a guest of a few KiB of code needs; its pages count as RSS.
TCG_TB_SIZE_MB = 1


def check_qemu(binary=QEMU_BINARY):
    """The path of the QEMU binary, or QemuNotFound saying how to install it."""
    path = shutil.which(binary)
    if path is None:
        raise QemuNotFound(f"{binary} not found: install qemu-system-x86 (apt-get install qemu-system-x86)")
    return path


def find_image(name_or_path):
    """The image file for a service name ("kv") or a path, or ImageNotFound saying how to build it."""
    text = str(name_or_path)
    if os.sep in text or text.endswith(".elf"):
        path = Path(text)
    else:
        path = IMAGE_DIR / f"{text}.elf"
    if not path.is_file():
        raise ImageNotFound(f'unikernel image "{path}" not found: build it with make -C unikernels')
    return path


def hardware_kvm(cpuinfo="/proc/cpuinfo", sys_module="/sys/module"):
    """True when KVM here runs ordinary guests: the CPU has vmx/svm and kvm_intel or kvm_amd is loaded."""
    try:
        with open(cpuinfo) as fh:
            flags = set()
            for line in fh:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        return False
    if not flags & {"vmx", "svm"}:
        return False
    # kvm_pvm also provides /dev/kvm but cannot run an ordinary 32-bit guest (see DESIGN.md).
    return any(os.path.isdir(os.path.join(sys_module, m)) for m in ("kvm_intel", "kvm_amd"))


def choose_accel(requested="auto", *, cpuinfo="/proc/cpuinfo", sys_module="/sys/module"):
    """'kvm' or 'tcg': kvm only with hardware virtualization; 'auto' falls back to tcg."""
    if requested == "tcg":
        return "tcg"
    usable = hardware_kvm(cpuinfo, sys_module) and os.access("/dev/kvm", os.R_OK | os.W_OK)
    if requested == "kvm":
        if not usable:
            raise LaunchFailed("accelerator kvm requested but this host has no hardware virtualization "
                               "(vmx/svm with kvm_intel or kvm_amd): use tcg")
        return "kvm"
    if requested != "auto":
        raise LaunchFailed(f'unknown accelerator "{requested}": use auto, kvm or tcg')
    return "kvm" if usable else "tcg"


def build_argv(image, *, memory_mb=16, accel="tcg", netdev_args, serial_log, append="", mac=None,
               qemu=QEMU_BINARY, keep_log=False, monitor_fd=None):
    """The QEMU command line for one microvm worker with one virtio-net device on netdev id n0.

    keep_log appends to serial_log instead of truncating it, so a restarted worker keeps its history.
    serial_log None sends the console nowhere (chardev con0, null) until QMP's chardev-change points it
    at a file. monitor_fd (a connected stream socket, in pass_fds) starts QEMU paused at reset (-S) with
    a QMP monitor on that socket: see prestart.py.
    """
    if accel == "kvm":
        accel_args = ["-accel", "kvm", "-cpu", "host"]
    else:
        accel_args = ["-accel", f"tcg,tb-size={TCG_TB_SIZE_MB}"]
    if serial_log is None:
        serial = ["-chardev", "null,id=con0", "-serial", "chardev:con0"]
    elif keep_log:
        # QEMU's option syntax escapes a comma in a value by doubling it.
        path = str(serial_log).replace(",", ",,")
        serial = ["-chardev", f"file,id=con0,path={path},append=on", "-serial", "chardev:con0"]
    else:
        serial = ["-serial", f"file:{serial_log}"]
    device = "virtio-net-device,netdev=n0" + (f",mac={mac}" if mac else "")
    monitor = [] if monitor_fd is None else [
        "-S", "-chardev", f"socket,id=qmp,fd={monitor_fd}", "-mon", "chardev=qmp,mode=control"]
    # acpi=off puts the 8 virtio-mmio slots at 0xfeb00000 with GSIs 5..12, where the guest probes;
    # the guest uses neither PIT, PIC nor RTC, so QEMU need not emulate them.
    return [qemu, "-M", "microvm,acpi=off,pit=off,pic=off,rtc=off", *accel_args,
            "-m", str(memory_mb), "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            *serial, "-kernel", str(image), "-append", append,
            "-netdev", netdev_args, "-device", device, *monitor]
