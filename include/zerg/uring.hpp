// Everything in the ring layer, for users who want one include.
#pragma once

#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/compat.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/registered_buffers.hpp>
#include <zerg/uring/registered_files.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>
