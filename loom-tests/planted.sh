#!/usr/bin/env bash
# Shows that the loom suite has teeth: for each planted bug, builds corum with it
# (`CORUM_PLANT=NAME`, see build.rs and the `corum_plant` cfgs in src/) and checks that the loom
# test meant to catch it fails, printing how it failed. Exits non-zero if a bug goes
# uncaught. Run from anywhere: `bash loom-tests/planted.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."

# plant : test file : test name filter
plants=(
    "ring-tail-relaxed:ring:fifo_through_wrap_around_with_back_pressure"
    "ring-head-relaxed:ring:racing_on_the_last_slot"
    "event-no-fence:wakeup:event_count_never_loses_a_wake_up"
    "event-waker-unchecked:wakeup:event_count_wakes_an_awaiting_task"
    "token-release-relaxed:token:pinned_thread_and_two_helpers"
    "token-release-no-notify:token:pinned_thread_and_two_helpers"
    "board-unpin-relaxed:board:a_berth_is_reused_only_after_its_collector_let_go"
    "board-answer-any-number:board:a_late_answer_for_a_reused_berth_is_dropped"
    "board-answer-no-notify:board:an_owner_waiting_for_its_answer_wakes"
    "board-answer-no-notify:board:a_waker_left_while_the_answer_lands"
    "board-publish-store-with-pins:board:a_berth_is_reused_only_after_its_collector_let_go"
    "board-unlist-no-recheck:board:a_lane_taken_off_the_list_while_its_owner_posts_keeps_the_post"
    "board-listed-before-posted:board:a_lane_taken_off_the_list_while_its_owner_posts_keeps_the_post"
    "board-oldest-relaxed:board:a_lane_with_a_write_in_flight_stays_on_the_list"
    "copy-reader-no-fence:copy_lock:a_read_overlapping_applies_sees_whole_batches"
    "copy-reader-no-fence:copy_lock:a_try_read_overlapping_an_apply_reads_a_whole_batch_or_steps_back"
    "copy-reader-no-fence:copy_lock:a_read_on_an_own_indicator_overlapping_applies_sees_whole_batches"
    "copy-own-lowered-relaxed:copy_lock:a_read_on_an_own_indicator_overlapping_applies_sees_whole_batches"
    "spin-lock-release-relaxed:spin_lock:two_threads_add_under_the_lock"
    "copy-try-write-ignores-readers:copy_lock:a_try_write_against_a_reader_writes_whole_or_not_at_all"
    "applied-before-apply:cluster:two_replicas_write_then_read_without_helping"
    "watermark-after-apply:cluster:two_replicas_write_then_read_without_helping"
)

uncaught=0
for entry in "${plants[@]}"; do
    IFS=: read -r plant test filter <<<"$entry"
    log=$(mktemp)
    started=$(date +%s)
    CORUM_PLANT="$plant" RUSTFLAGS="--cfg corum_loom" CARGO_TARGET_DIR=target/loom-plant \
        cargo test -q -p corum-loom-tests --release --test "$test" -- --exact "$filter" >"$log" 2>&1
    seconds=$(( $(date +%s) - started ))
    # loom reports a deadlock by aborting the process, so no test result line follows it.
    if grep -q "test result: FAILED" "$log" || grep -q "^deadlock;" "$log"; then
        # The first panic message: the line after loom's or the test's "panicked at".
        why=$(grep -m1 -A1 "panicked at" "$log" | tail -n 1 | cut -c 1-150)
        echo "caught   $plant by $test::$filter (${seconds}s): $why"
    elif grep -q "test result: ok" "$log"; then
        echo "MISSED   $plant: $test::$filter passed with the bug planted"
        uncaught=1
    else
        echo "ERROR    $plant: the build or run failed before any test result:"
        tail -n 20 "$log"
        uncaught=1
    fi
    rm -f "$log"
done
exit $uncaught
