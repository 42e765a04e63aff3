// Everything in the ring layer, for users who want one include.
#pragma once

#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/compat.hpp>
#include <zerg/uring/descriptor_operations.hpp>
#include <zerg/uring/epoll_operations.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/file_operations.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/pipe_operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/registered_buffers.hpp>
#include <zerg/uring/registered_files.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>
#include <zerg/uring/wait_operations.hpp>
#include <zerg/uring/zcrx.hpp>
