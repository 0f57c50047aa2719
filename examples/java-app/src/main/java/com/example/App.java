package com.example;

/** Prints a greeting: the whole application the example image runs. */
public final class App {
    private App() {}

    /** The greeting, from the bundled resource. */
    static String greeting() throws java.io.IOException {
        try (var in = App.class.getResourceAsStream("/greeting.txt")) {
            return new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim();
        }
    }

    public static void main(String[] args) throws java.io.IOException {
        System.out.println(greeting());
    }
}
