/* The stored model and the test images, in flash, straight from the files named by
 * MODEL_PATH and IMAGES_PATH (set by the build): nothing generated, nothing copied. The
 * container is 64-byte aligned, as its format asks of its buffer. */
    .section .rodata.blobs, "a"

    .balign 64
    .global model_container
    .type model_container, %object
model_container:
    .incbin MODEL_PATH
    .global model_container_end
model_container_end:
    .size model_container, model_container_end - model_container

    .balign 4
    .global test_images
    .type test_images, %object
test_images:
    .incbin IMAGES_PATH
    .global test_images_end
test_images_end:
    .size test_images, test_images_end - test_images
