// The few KVM calls Swift cannot make directly: ioctl is variadic, the request numbers are
// function-like macros, and kvm_run is a union-heavy struct. Everything here is a thin,
// allocation-free pass-through; ownership and safety rules live in the Swift KVM module.
#ifndef CKVM_H
#define CKVM_H

#include <stdint.h>
#include <stddef.h>
#include <linux/kvm.h>

// Request numbers, exported as constants because Swift cannot import _IO/_IOW macros.
static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long CKVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long CKVM_IRQ_LINE_STATUS = KVM_IRQ_LINE_STATUS;
static const unsigned long CKVM_IRQFD = KVM_IRQFD;
static const unsigned long CKVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long CKVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long CKVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long CKVM_TRANSLATE = KVM_TRANSLATE;
// Snapshot and restore: the rest of a vCPU's state, the irqchip, the PIT and kvm-clock.
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
static const unsigned long CKVM_GET_CPUID2 = KVM_GET_CPUID2;
static const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long CKVM_GET_XSAVE2 = KVM_GET_XSAVE2;
static const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned long CKVM_GET_IRQCHIP = KVM_GET_IRQCHIP;
static const unsigned long CKVM_SET_IRQCHIP = KVM_SET_IRQCHIP;
static const unsigned long CKVM_GET_PIT2 = KVM_GET_PIT2;
static const unsigned long CKVM_SET_PIT2 = KVM_SET_PIT2;
static const unsigned long CKVM_GET_CLOCK = KVM_GET_CLOCK;
static const unsigned long CKVM_SET_CLOCK = KVM_SET_CLOCK;
static const uint32_t CKVM_IOEVENTFD_FLAG_DATAMATCH = KVM_IOEVENTFD_FLAG_DATAMATCH;

int ckvm_ioctl_none(int fd, unsigned long request);
int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value);
int ckvm_ioctl_pointer(int fd, unsigned long request, void *argument);

// A flat copy of the parts of kvm_run's exit union that the VMM acts on.
struct ckvm_exit {
    uint32_t reason;
    // KVM_EXIT_IO
    uint8_t io_direction;  // KVM_EXIT_IO_IN / KVM_EXIT_IO_OUT
    uint8_t io_size;
    uint16_t io_port;
    uint32_t io_count;
    uint64_t io_data_offset;
    // KVM_EXIT_MMIO
    uint64_t mmio_address;
    uint32_t mmio_length;
    uint8_t mmio_is_write;
    uint8_t mmio_data[8];
    // KVM_EXIT_INTERNAL_ERROR
    uint32_t internal_suberror;
    uint32_t internal_ndata;
    uint64_t internal_data[16];
    uint8_t emulation_has_bytes;
    uint8_t emulation_instruction_length;
    uint8_t emulation_instruction[16];
    // KVM_EXIT_FAIL_ENTRY / KVM_EXIT_UNKNOWN
    uint64_t hardware_reason;
    // KVM_EXIT_SYSTEM_EVENT
    uint32_t system_event_type;
};

void ckvm_decode_exit(const struct kvm_run *run, struct ckvm_exit *out);
void ckvm_set_mmio_read_data(struct kvm_run *run, const uint8_t *data, uint32_t length);
void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value);

// One IOAPIC input as the in-kernel IOAPIC holds it (KVM_GET_IRQCHIP), flattened because
// Swift cannot reach into the redirection table's bitfields.
struct ckvm_ioapic_pin {
    uint8_t vector;
    uint8_t masked;
    uint8_t level_triggered;
    uint8_t remote_irr;
    uint8_t irr;  // the pin's bit in the IOAPIC's interrupt request register
};
int ckvm_ioapic_pin(int vm_fd, unsigned pin, struct ckvm_ioapic_pin *out);

// Whether `vector` is requested (IRR) and in service (ISR) in a vCPU's local APIC (KVM_GET_LAPIC).
int ckvm_lapic_vector(int vcpu_fd, uint8_t vector, uint8_t *requested, uint8_t *in_service);

#endif
