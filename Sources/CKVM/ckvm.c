#define _GNU_SOURCE
#include "ckvm.h"
#include <string.h>
#include <sys/ioctl.h>
#include <errno.h>

int ckvm_ioctl_none(int fd, unsigned long request) { return ioctl(fd, request, 0); }
int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) { return ioctl(fd, request, value); }
int ckvm_ioctl_pointer(int fd, unsigned long request, void *argument) { return ioctl(fd, request, argument); }

void ckvm_decode_exit(const struct kvm_run *run, struct ckvm_exit *out) {
    memset(out, 0, sizeof(*out));
    out->reason = run->exit_reason;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        out->io_direction = run->io.direction;
        out->io_size = run->io.size;
        out->io_port = run->io.port;
        out->io_count = run->io.count;
        out->io_data_offset = run->io.data_offset;
        break;
    case KVM_EXIT_MMIO:
        out->mmio_address = run->mmio.phys_addr;
        out->mmio_length = run->mmio.len > 8 ? 8 : run->mmio.len;
        out->mmio_is_write = run->mmio.is_write;
        memcpy(out->mmio_data, run->mmio.data, 8);
        break;
    case KVM_EXIT_INTERNAL_ERROR: {
        out->internal_suberror = run->internal.suberror;
        uint32_t n = run->internal.ndata;
        out->internal_ndata = n > 16 ? 16 : n;
        memcpy(out->internal_data, run->internal.data, out->internal_ndata * sizeof(uint64_t));
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
            (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
            uint8_t len = run->emulation_failure.insn_size;
            if (len > 15) len = 15;
            out->emulation_has_bytes = 1;
            out->emulation_instruction_length = len;
            memcpy(out->emulation_instruction, run->emulation_failure.insn_bytes, len);
        }
        break;
    }
    case KVM_EXIT_FAIL_ENTRY:
        out->hardware_reason = run->fail_entry.hardware_entry_failure_reason;
        break;
    case KVM_EXIT_UNKNOWN:
        out->hardware_reason = run->hw.hardware_exit_reason;
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        out->system_event_type = run->system_event.type;
        break;
    default:
        break;
    }
}

void ckvm_set_mmio_read_data(struct kvm_run *run, const uint8_t *data, uint32_t length) {
    memcpy(run->mmio.data, data, length > 8 ? 8 : length);
}

void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

int ckvm_ioapic_pin(int vm_fd, unsigned pin, struct ckvm_ioapic_pin *out) {
    if (pin >= KVM_IOAPIC_NUM_PINS) { errno = EINVAL; return -1; }
    struct kvm_irqchip chip;
    memset(&chip, 0, sizeof(chip));
    chip.chip_id = KVM_IRQCHIP_IOAPIC;
    if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0) return -1;
    out->vector = chip.chip.ioapic.redirtbl[pin].fields.vector;
    out->masked = chip.chip.ioapic.redirtbl[pin].fields.mask;
    out->level_triggered = chip.chip.ioapic.redirtbl[pin].fields.trig_mode;
    out->remote_irr = chip.chip.ioapic.redirtbl[pin].fields.remote_irr;
    out->irr = (chip.chip.ioapic.irr >> pin) & 1;
    return 0;
}

int ckvm_lapic_vector(int vcpu_fd, uint8_t vector, uint8_t *requested, uint8_t *in_service) {
    struct kvm_lapic_state lapic;
    if (ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0) return -1;
    // IRR and ISR are eight 32-bit registers each, 16 bytes apart (Intel SDM, APIC register map).
    unsigned word = vector / 32, bit = vector % 32;
    uint32_t irr, isr;
    memcpy(&irr, lapic.regs + 0x200 + word * 16, sizeof(irr));
    memcpy(&isr, lapic.regs + 0x100 + word * 16, sizeof(isr));
    *requested = (irr >> bit) & 1;
    *in_service = (isr >> bit) & 1;
    return 0;
}
