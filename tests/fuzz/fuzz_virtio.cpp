// fuzz_virtio: libFuzzer harness for virtqueue processing in virtio-blk, -net, -console and -rng
// from random guest memory. A test driver (tests/devices/test_virtio_driver.h) sets the device up
// through MMIO register writes (3.1.1 initialization, modern or legacy queue layout, queues of 16
// entries); then the input's bytes become guest RAM - over the rings the driver placed and the
// buffers after them - and the driver notifies queues. Deferred work (bounded turns) runs too.
//
// Input: [config: 1 byte][kicks: 1 byte][RAM image: the rest, copied to guest physical 0x1000].
// config bits 0-1: device (0 blk, 1 net, 2 console, 3 rng); bit 2: legacy layout; bit 3:
// VIRTIO_F_EVENT_IDX; bit 4: VIRTIO_F_INDIRECT_DESC; bit 5: blk read-only. kicks: four 2-bit
// queue numbers, each a round of: notify that queue (when it exists), host input (a frame for
// net, bytes for the console), deferred turns, interrupt acknowledge.
// The blk backend is a memory image that traps on any access outside itself.
// Seeds: tests/fuzz/corpus/virtio/ (make_corpus.cpp builds them with the same driver).
#define DOCTEST_CONFIG_DISABLE  // the test driver's REQUIREs compile to nothing here
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_virtio.h"

using namespace m86;
using namespace m86::dev;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    fuzz::VirtioRig rig(data[0]);
    test::Driver& d = *rig.driver;
    const size_t n = std::min(size - 2, size_t(fuzz::kRam - fuzz::kRingBase));
    std::memcpy(d.ram.data() + fuzz::kRingBase, data + 2, n);
    const uint8_t frame[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06};
    for (unsigned round = 0; round < 4; round++) {
        unsigned q = (data[1] >> (2 * round)) & 3;
        if (q < rig.device->num_queues()) d.kick(q);
        if (rig.net) rig.net->receive(frame, sizeof frame);
        if (rig.console) rig.console->input(reinterpret_cast<const uint8_t*>("fuzz"), 4);
        for (unsigned i = 0; i < 16 && d.t->run_deferred(); i++) {
        }
        d.ack_interrupts();
    }
    return 0;
}
