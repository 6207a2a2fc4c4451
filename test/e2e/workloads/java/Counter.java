import java.io.FileWriter;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A JVM workload for the e2e tests: state on the heap (a patterned long[] and a growing
 * HashMap) and a second Java thread counting, reported every 50 ms as
 * "tick N map M sum S worker W". After a restore the next tick is N+1, the map holds
 * exactly N+2 entries, the sum is unchanged and the worker keeps counting.
 */
public class Counter {
    public static void main(String[] args) throws Exception {
        long[] heap = new long[4 << 20];
        for (int i = 0; i < heap.length; i++) heap[i] = i * 31L + 7;
        Map<Integer, String> map = new HashMap<>();
        AtomicLong worker = new AtomicLong();
        Thread t = new Thread(() -> {
            while (true) {
                worker.incrementAndGet();
                try { Thread.sleep(5); } catch (InterruptedException e) { return; }
            }
        }, "stasis-worker");
        t.setDaemon(true);
        t.start();
        try (FileWriter w = new FileWriter(args[0], true)) {
            w.write("start pid " + ProcessHandle.current().pid() + "\n");
            w.flush();
            for (int n = 0; ; n++) {
                map.put(n, "v" + n);
                long sum = 0;
                for (int i = 0; i < heap.length; i += 512) sum += heap[i];
                w.write("tick " + n + " map " + map.size() + " sum " + sum + " worker " + worker.get() + "\n");
                w.flush();
                Thread.sleep(50);
            }
        }
    }
}
