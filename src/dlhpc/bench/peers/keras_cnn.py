"""The tutorial's Keras CNN, as written there, timed per epoch. Prints one JSON line.

python keras_cnn.py DATA.npz --threads 2 --epochs 10 --batch-size 32
"""

import argparse
import json
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    tf.random.set_seed(0)
    from tensorflow import keras
    from tensorflow.keras import layers

    z = np.load(a.data)
    x_train = z["x_train"].reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = z["x_test"].reshape(-1, 28, 28, 1).astype("float32") / 255
    k = int(z["y_train"].max()) + 1
    y_train = keras.utils.to_categorical(z["y_train"], k)
    y_test = keras.utils.to_categorical(z["y_test"], k)

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(k, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    epochs = []
    train_s = 0.0
    for e in range(a.epochs):
        t0 = time.perf_counter()
        model.fit(x_train, y_train, epochs=1, batch_size=a.batch_size, verbose=0)
        train_s += time.perf_counter() - t0
        _, acc = model.evaluate(x_test, y_test, verbose=0)
        epochs.append({"epoch": e + 1, "train_seconds": train_s, "test_accuracy": float(acc)})
    print(
        json.dumps(
            {
                "tool": "keras",
                "version": tf.__version__,
                "params": model.count_params(),
                "train_samples": len(x_train),
                "epochs": epochs,
            }
        )
    )


if __name__ == "__main__":
    main()
