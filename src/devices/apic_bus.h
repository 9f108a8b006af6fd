// The APIC bus: interrupt messages between I/O APICs and local APICs, and EOI broadcasts back.
// (On real systems this is the front-side / system bus carrying interrupt messages; SDM Vol. 3A,
// 10.6 "Issuing Interprocessor Interrupts" and 10.11 "Message Signalled Interrupts" describe the
// message fields.)
//
//     ApicBus bus;
//     bus.add_lapic(&lapic0); bus.add_lapic(&lapic1);   // every CPU's Lapic
//     bus.add_eoi_listener(&ioapic);                     // who hears level-triggered EOIs
//     Ioapic ioapic(&bus);                               // IOAPIC -> bus (ApicSink)
//     Lapic lapic(..., /*ipi=*/&bus, /*eoi=*/&bus, ...); // ICR -> bus, EOI -> bus
//
// deliver() resolves the destination (physical or logical, xAPIC or x2APIC format, broadcast,
// ICR shorthands) against every registered Lapic and hands the message to the chosen ones. Lowest
// priority delivery picks the matching LAPIC with the lowest arbitration priority (ties: the first
// registered), which is deterministic.
#pragma once

#include <cstdint>
#include <vector>

namespace m86::dev {

class Lapic;

namespace apic {
// Delivery modes (ICR bits 10:8, I/O APIC redirection entry bits 10:8).
enum DeliveryMode : uint8_t {
    kFixed = 0,
    kLowestPriority = 1,
    kSmi = 2,
    kNmi = 4,
    kInit = 5,
    kStartup = 6,
    kExtInt = 7,
};
// ICR destination shorthands (bits 19:18).
enum Shorthand : uint8_t { kNoShorthand = 0, kSelf = 1, kAllIncludingSelf = 2, kAllExcludingSelf = 3 };
constexpr uint32_t kBroadcastXapic = 0xff;
constexpr uint32_t kBroadcastX2apic = 0xffffffff;
}  // namespace apic

struct ApicMessage {
    uint8_t vector = 0;
    uint8_t delivery_mode = apic::kFixed;
    bool logical = false;      // destination mode
    bool level = false;        // trigger mode: level (true) or edge
    bool assert = true;        // the level bit of an IPI (INIT level de-assert has it clear)
    uint32_t dest = 0;         // 8-bit xAPIC destination, or 32-bit if x2apic_dest
    bool x2apic_dest = false;  // sent by a LAPIC in x2APIC mode (32-bit destination)
    uint8_t shorthand = apic::kNoShorthand;
    const Lapic* source = nullptr;  // the sending LAPIC (shorthands); nullptr for the I/O APIC
};

class ApicSink {
   public:
    virtual ~ApicSink() = default;
    virtual void deliver(const ApicMessage& msg) = 0;
};

class EoiListener {
   public:
    virtual ~EoiListener() = default;
    virtual void eoi(uint8_t vector) = 0;
};

class ApicBus : public ApicSink, public EoiListener {
   public:
    void add_lapic(Lapic* l) { lapics_.push_back(l); }
    void add_eoi_listener(EoiListener* l) { listeners_.push_back(l); }
    const std::vector<Lapic*>& lapics() const { return lapics_; }

    void deliver(const ApicMessage& msg) override;
    void eoi(uint8_t vector) override {
        for (EoiListener* l : listeners_) l->eoi(vector);
    }

   private:
    std::vector<Lapic*> lapics_;
    std::vector<EoiListener*> listeners_;
};

}  // namespace m86::dev
