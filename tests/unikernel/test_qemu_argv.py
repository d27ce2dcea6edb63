"""The QEMU command line, accelerator choice and up-front checks, without starting QEMU."""

import pytest

from gateway.errors import ImageNotFound, LaunchFailed, QemuNotFound
from gateway.unikernel import qemu


def _host(tmp_path, flags, modules):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu {' '.join(flags)} sse2\n")
    mods = tmp_path / "module"
    for m in modules:
        (mods / m).mkdir(parents=True)
    mods.mkdir(exist_ok=True)
    return {"cpuinfo": str(cpuinfo), "sys_module": str(mods)}


def test_tcg_without_hardware_virtualization(tmp_path):
    assert qemu.choose_accel("auto", **_host(tmp_path, [], ["kvm"])) == "tcg"


def test_kvm_pvm_is_never_chosen(tmp_path):
    host = _host(tmp_path, ["vmx"], ["kvm", "kvm_pvm"])
    assert qemu.choose_accel("auto", **host) == "tcg"
    with pytest.raises(LaunchFailed, match="no hardware virtualization"):
        qemu.choose_accel("kvm", **host)


def test_hardware_kvm_detected(tmp_path):
    assert qemu.hardware_kvm(**_host(tmp_path, ["svm"], ["kvm", "kvm_amd"]))


def test_explicit_tcg_and_unknown(tmp_path):
    assert qemu.choose_accel("tcg") == "tcg"
    with pytest.raises(LaunchFailed, match="unknown accelerator"):
        qemu.choose_accel("hax")


def test_argv_has_the_verified_shape():
    argv = qemu.build_argv("/img/echo.elf", memory_mb=16, accel="tcg", netdev_args="dgram,id=n0,local.type=fd,"
                           "local.str=5", serial_log="/tmp/x.log", append="id=3", mac="52:54:00:00:00:03")
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-M") + 1].startswith("microvm,acpi=off")
    assert argv[argv.index("-accel") + 1].startswith("tcg")
    assert argv[argv.index("-m") + 1] == "16"
    assert argv[argv.index("-kernel") + 1] == "/img/echo.elf"
    assert argv[argv.index("-append") + 1] == "id=3"
    assert argv[argv.index("-serial") + 1] == "file:/tmp/x.log"
    assert argv[argv.index("-device") + 1] == "virtio-net-device,netdev=n0,mac=52:54:00:00:00:03"
    kvm = qemu.build_argv("/i", accel="kvm", netdev_args="x", serial_log="l")
    assert kvm[kvm.index("-accel") + 1] == "kvm" and "host" in kvm


def test_missing_qemu_and_image_say_what_to_do(tmp_path):
    with pytest.raises(QemuNotFound, match=r"apt-get install qemu-system-x86"):
        qemu.check_qemu("qemu-system-x86_64-not-here")
    with pytest.raises(ImageNotFound, match="make -C unikernels"):
        qemu.find_image(str(tmp_path / "nope.elf"))
    with pytest.raises(ImageNotFound, match="make -C unikernels"):
        qemu.find_image("no-such-service")
