// ApicBus: destination resolution for interrupt messages (SDM Vol. 3A, 10.6.2 "Determining IPI
// Destination", 10.6.2.4 "Lowest Priority Delivery Mode").
#include "devices/apic_bus.h"

#include "devices/lapic.h"

namespace m86::dev {

void ApicBus::deliver(const ApicMessage& msg) {
    Lapic* chosen[64];
    unsigned n = 0;
    for (Lapic* l : lapics_) {
        if (!l->hw_enabled()) continue;
        bool self = l == msg.source;
        bool take;
        switch (msg.shorthand) {
            case apic::kSelf: take = self; break;
            case apic::kAllIncludingSelf: take = true; break;
            case apic::kAllExcludingSelf: take = !self; break;
            default: take = l->matches(msg); break;
        }
        if (take && n < 64) chosen[n++] = l;
    }
    if (n == 0) return;
    if (msg.delivery_mode == apic::kLowestPriority && n > 1) {
        // The processor with the lowest arbitration priority takes it; software-enabled APICs
        // are preferred; ties go to the first registered, which keeps delivery deterministic.
        Lapic* best = nullptr;
        for (unsigned i = 0; i < n; i++) {
            Lapic* l = chosen[i];
            if (!best || (l->sw_enabled() && !best->sw_enabled()) ||
                (l->sw_enabled() == best->sw_enabled() &&
                 l->arbitration_priority() < best->arbitration_priority()))
                best = l;
        }
        best->accept(msg);
        return;
    }
    for (unsigned i = 0; i < n; i++) chosen[i]->accept(msg);
}

}  // namespace m86::dev
