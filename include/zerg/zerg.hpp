// Everything a server needs, for users who want one include.
#pragma once

#include <zerg/acceptor.hpp>
#include <zerg/address.hpp>
#include <zerg/config.hpp>
#include <zerg/connection.hpp>
#include <zerg/connection_handle.hpp>
#include <zerg/counters.hpp>
#include <zerg/handler.hpp>
#include <zerg/policy/buffer.hpp>
#include <zerg/policy/handoff.hpp>
#include <zerg/policy/submission.hpp>
#include <zerg/reactor.hpp>
#include <zerg/server.hpp>
#include <zerg/buffer_sequence.hpp>
#include <zerg/buffer_writer.hpp>
#include <zerg/ring_item.hpp>
#include <zerg/task.hpp>
#include <zerg/signals.hpp>
#include <zerg/stream.hpp>
#include <zerg/datagram.hpp>
#include <zerg/multicast.hpp>
#include <zerg/uring.hpp>
