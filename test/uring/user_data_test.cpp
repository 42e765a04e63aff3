#define BOOST_TEST_MODULE user_data
#include <boost/test/unit_test.hpp>

#include <zerg/uring/user_data.hpp>

using zerg::uring::slot_generations;
using zerg::uring::user_data;

BOOST_AUTO_TEST_CASE(fields_round_trip) {
    user_data ud(7, 123456, 0xabcdef);
    BOOST_TEST(ud.kind() == 7);
    BOOST_TEST(ud.slot() == 123456u);
    BOOST_TEST(ud.generation() == 0xabcdefu);
    BOOST_TEST(user_data(ud.raw()).raw() == ud.raw());
}

BOOST_AUTO_TEST_CASE(generation_wraps_within_its_bits) {
    user_data ud(1, 0xffffffffu, 0x1000001);
    BOOST_TEST(ud.generation() == 1u);
    BOOST_TEST(ud.slot() == 0xffffffffu);
    BOOST_TEST(ud.kind() == 1);
}

BOOST_AUTO_TEST_CASE(stale_tag_is_rejected_after_slot_reuse) {
    slot_generations gens(4);
    user_data old_recv = gens.tag(2, 3);
    BOOST_TEST(gens.is_current(old_recv));
    gens.retire(3);  // connection in slot 3 closed; slot goes to a new one
    user_data new_recv = gens.tag(2, 3);
    BOOST_TEST(!gens.is_current(old_recv));
    BOOST_TEST(gens.is_current(new_recv));
    BOOST_TEST(gens.is_current(gens.tag(2, 2)));  // other slots untouched
}

BOOST_AUTO_TEST_CASE(out_of_range_slot_is_never_current) {
    slot_generations gens(2);
    BOOST_TEST(!gens.is_current(user_data(1, 2, 0)));
}
