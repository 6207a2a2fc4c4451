/*
 * stasis-bench JVM workload: an ordinary small Java program worth checkpointing.
 *
 *   setsid java -cp DIR BenchJvm LOG
 *
 * Keeps state on the heap (a patterned long[] of 1 MiB and a HashMap that grows by one
 * entry per tick) and runs a second Java thread that counts every 5 ms. Every 20 ms it
 * appends "tick N map M sum S worker W\n" to LOG in one write(2): N counts from 1, M is
 * the map's size (always N), S a checksum of the array (the same on every line), W the
 * worker thread's count. After a restore the bench expects the next lines to be
 * N+1, N+2, ... with M = N, the same S, and W still growing. Default JVM flags: the
 * bench runs it as `java -cp DIR BenchJvm LOG`, nothing more.
 */
import java.io.FileWriter;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

public class BenchJvm {
    public static void main(String[] args) throws Exception {
        long[] heap = new long[1 << 17];
        for (int i = 0; i < heap.length; i++) {
            heap[i] = i * 0x9E3779B97F4A7C15L + 1;
        }
        Map<Long, String> map = new HashMap<>();
        AtomicLong worker = new AtomicLong();
        Thread t = new Thread(() -> {
            while (true) {
                worker.incrementAndGet();
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "bench-worker");
        t.setDaemon(true);
        t.start();
        try (FileWriter w = new FileWriter(args[0], true)) {
            for (long n = 1; ; n++) {
                map.put(n, "v" + n);
                long sum = 0;
                for (int i = 0; i < heap.length; i += 64) {
                    sum += heap[i];
                }
                w.write("tick " + n + " map " + map.size() + " sum " + sum + " worker " + worker.get() + "\n");
                w.flush();
                Thread.sleep(20);
            }
        }
    }
}
